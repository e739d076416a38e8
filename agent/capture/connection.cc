#include "agent/capture/connection.hpp"

namespace infertap {
namespace {

// Forwards one connection's calls to a StreamSink shared by every connection.
class SinkConsumer final : public ConnConsumer {
 public:
  SinkConsumer(StreamSink& sink, const ConnInfo& conn) : sink_(sink), conn_(conn) {}
  void OnOpen() override { sink_.OnOpen(conn_); }
  void OnData(Direction dir, uint64_t ts_ns, std::span<const uint8_t> bytes) override {
    sink_.OnData(conn_, dir, ts_ns, bytes);
  }
  void OnGap(Direction dir, uint64_t ts_ns, uint64_t len) override {
    sink_.OnGap(conn_, dir, ts_ns, len);
  }
  void OnClose(uint64_t ts_ns) override { sink_.OnClose(conn_, ts_ns); }

 private:
  StreamSink& sink_;
  const ConnInfo& conn_;
};

}  // namespace

std::unique_ptr<ConnConsumer> SinkConsumers::NewConsumer(const ConnInfo& conn) {
  return std::make_unique<SinkConsumer>(sink_, conn);
}

// Where one direction's reassembled bytes go: counters, then the consumer. A piece whose bytes
// were not all copied (the kernel's capture cap, a pcap snaplen) delivers its known prefix and a
// gap for the rest: it existed in the stream.
class Connection::Output final : public StreamReassembler::Output {
 public:
  Output(Connection& c, Direction d) : c_(c), d_(d) {}
  void OnRange(uint64_t ts, uint64_t len, std::span<const uint8_t> bytes) override {
    if (!bytes.empty()) {
      (d_ == Direction::kIngress ? c_.info_.counters.bytes_in : c_.info_.counters.bytes_out) +=
          bytes.size();
      c_.totals_.data_bytes += bytes.size();
      c_.consumer_->OnData(d_, ts, bytes);
    }
    if (len > bytes.size()) OnHole(ts, len - bytes.size());
  }
  void OnHole(uint64_t ts, uint64_t len) override {
    c_.info_.counters.gap_bytes += len;
    c_.totals_.gap_bytes += len;
    c_.consumer_->OnGap(d_, ts, len);
  }
  void OnDuplicate(uint64_t len) override { c_.totals_.duplicate_bytes += len; }

 private:
  Connection& c_;
  Direction d_;
};

Connection::Connection(const ConnInfo& info, StreamReassembler::Limits limits,
                       ConnConsumerFactory& factory, StreamTotals& totals)
    : info_(info),
      dir_{StreamReassembler(limits), StreamReassembler(limits)},
      totals_(totals),
      consumer_(factory.NewConsumer(info_)) {}

Connection::~Connection() = default;

void Connection::Opened() {
  if (consumer_) consumer_->OnOpen();
}

void Connection::Offer(Direction d, uint64_t pos, uint64_t len, uint64_t ts_ns,
                       std::span<const uint8_t> bytes) {
  if (!consumer_) return;
  Output out(*this, d);
  dir_[Index(d)].Offer(pos, len, ts_ns, bytes, out);
}

void Connection::DeclareHolesBefore(Direction d, uint64_t ts_ns) {
  if (!consumer_) return;
  StreamReassembler& r = dir_[Index(d)];
  Output out(*this, d);
  while (r.has_pending() && r.first_pending_ts() <= ts_ns) r.ForceFirstHole(out);
}

void Connection::DeclareHolesOlderThan(uint64_t now_ns, uint64_t window_ns) {
  if (!consumer_) return;
  for (Direction d : {Direction::kIngress, Direction::kEgress}) {
    StreamReassembler& r = dir_[Index(d)];
    Output out(*this, d);
    while (r.has_pending() && now_ns >= r.first_pending_ts() + window_ns) r.ForceFirstHole(out);
  }
}

void Connection::FinishStream(Direction d, uint64_t pos, uint64_t ts_ns) {
  if (!consumer_) return;
  Output out(*this, d);
  dir_[Index(d)].FinishAt(pos, ts_ns, out);
}

void Connection::Close(uint64_t ts_ns, const uint64_t* final_pos) {
  if (!consumer_) return;
  for (Direction d : {Direction::kIngress, Direction::kEgress})
    FinishStream(d, final_pos ? final_pos[Index(d)] : 0, ts_ns);
  consumer_->OnClose(ts_ns);
  consumer_.reset();
  for (StreamReassembler& r : dir_) r.ClearPending();
}

void Connection::CloseLost(uint64_t ts_ns) {
  if (!consumer_) return;
  for (Direction d : {Direction::kIngress, Direction::kEgress})
    consumer_->OnGap(d, ts_ns, ConnConsumer::kUnknownGap);
  Close(ts_ns, nullptr);
}

}  // namespace infertap
