// Result of feeding bytes to one of the incremental parsers in parsers/.
//
// Every parser consumes the whole view it is given (it never asks the caller to keep bytes
// around); the state tells the caller where the stream stands after those bytes.
#pragma once

namespace infertap {

enum class ParseState {
  kNeedMoreData,  // mid-message: more bytes are needed to finish the current unit
  kOk,            // positioned at a unit boundary (message/event), nothing pending
  kInvalid,       // malformed input was seen in these bytes; the parser has resynchronised
                  // or is looking for the next plausible start
  kEnd,           // the stream can carry no more units (e.g. protocol upgrade, closed)
};

}  // namespace infertap
