#include "parsers/inflate.hpp"

#include <gtest/gtest.h>
#include <zlib.h>

#include <string>

#include "test_util.hpp"

namespace infertap {
namespace {

std::string Decode(Inflater& inf, std::string_view in, size_t piece, bool* ok) {
  std::string out;
  *ok = true;
  for (size_t i = 0; i < in.size(); i += piece)
    *ok &= inf.Feed(test::Bytes(in.substr(i, piece)), [&](std::span<const uint8_t> d) {
      out.append(reinterpret_cast<const char*>(d.data()), d.size());
    });
  return out;
}

TEST(Inflater, GzipInEverySplit) {
  std::string plain;
  for (int i = 0; i < 5000; ++i) plain += "data: {\"i\":" + std::to_string(i) + "}\n\n";
  std::string gz = test::Gzip(plain);
  for (size_t piece : {1, 7, 100, 1 << 20}) {
    Inflater inf(1 << 30);
    inf.Start(Inflater::Encoding::kGzip);
    bool ok;
    EXPECT_EQ(Decode(inf, gz, piece, &ok), plain);
    EXPECT_TRUE(ok);
    EXPECT_TRUE(inf.finished());
  }
}

TEST(Inflater, ZlibAndRawDeflate) {
  std::string plain(10000, 'q');
  for (int bits : {15, -15}) {
    z_stream zs{};
    deflateInit2(&zs, 6, Z_DEFLATED, bits, 8, Z_DEFAULT_STRATEGY);
    std::string out(deflateBound(&zs, plain.size()) + 16, '\0');
    zs.next_in = reinterpret_cast<Bytef*>(plain.data());
    zs.avail_in = uInt(plain.size());
    zs.next_out = reinterpret_cast<Bytef*>(out.data());
    zs.avail_out = uInt(out.size());
    deflate(&zs, Z_FINISH);
    out.resize(zs.total_out);
    deflateEnd(&zs);
    Inflater inf(1 << 20);
    inf.Start(Inflater::Encoding::kDeflate);
    bool ok;
    EXPECT_EQ(Decode(inf, out, 3, &ok), plain) << bits;
    EXPECT_TRUE(ok);
  }
}

TEST(Inflater, CorruptAndBombAndUnsupported) {
  Inflater inf(1000);
  inf.Start(Inflater::Encoding::kGzip);
  bool ok;
  Decode(inf, "definitely not gzip", 4, &ok);
  EXPECT_FALSE(ok);
  EXPECT_TRUE(inf.failed());

  inf.Start(Inflater::Encoding::kGzip);
  std::string out = Decode(inf, test::Gzip(std::string(1 << 20, 'a')), 1024, &ok);
  EXPECT_FALSE(ok);
  EXPECT_LE(out.size(), 1000u + 16384u);

  EXPECT_EQ(Inflater::EncodingFor("br"), Inflater::Encoding::kUnsupported);
  EXPECT_EQ(Inflater::EncodingFor("x-gzip"), Inflater::Encoding::kGzip);
  EXPECT_EQ(Inflater::EncodingFor(""), Inflater::Encoding::kIdentity);
  inf.Start(Inflater::Encoding::kUnsupported);
  EXPECT_FALSE(inf.Feed(test::Bytes("x"), [](std::span<const uint8_t>) {}));
}

}  // namespace
}  // namespace infertap
