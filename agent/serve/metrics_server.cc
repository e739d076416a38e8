#include "agent/serve/metrics_server.hpp"

#include <zlib.h>

#include <cstdlib>

namespace infertap::serve {

bool AcceptsGzip(std::string_view v) {
  while (!v.empty()) {
    size_t comma = v.find(',');
    std::string_view item = v.substr(0, comma);
    v = comma == std::string_view::npos ? std::string_view() : v.substr(comma + 1);
    size_t semi = item.find(';');
    std::string_view coding = item.substr(0, semi);
    while (!coding.empty() && coding.front() == ' ') coding.remove_prefix(1);
    while (!coding.empty() && coding.back() == ' ') coding.remove_suffix(1);
    if (!EqualsIgnoreCase(coding, "gzip")) continue;
    if (semi == std::string_view::npos) return true;
    std::string_view params = item.substr(semi + 1);
    size_t q = params.find("q=");
    if (q == std::string_view::npos) return true;
    // q=0, q=0.0, q=0.000 all mean "not acceptable" (RFC 9110 §12.4.2).
    std::string qv(params.substr(q + 2));
    return std::strtod(qv.c_str(), nullptr) > 0;
  }
  return false;
}

std::string GzipCompress(std::string_view data) {
  z_stream zs{};
  // windowBits 15 + 16 selects the gzip wrapper; level 1 because scrapes are frequent and the
  // text is very repetitive (fast levels already shrink it ~10x).
  if (deflateInit2(&zs, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return {};
  std::string out;
  out.resize(deflateBound(&zs, data.size()));
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  int rc = deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return rc == Z_STREAM_END ? out : std::string();
}

MetricsServer::MetricsServer(MetricsServerOptions options, const Metrics& metrics)
    : options_(std::move(options)), metrics_(metrics), http_(options_.http) {
  http_.Handle("/metrics", [this](const RequestHead& req) { return ServeMetrics(req); });
  http_.Handle(
      "/healthz", [](const RequestHead&) { return HttpResponse::Text(200, "ok"); },
      /*may_block=*/false);
  http_.Handle(
      "/readyz", [this](const RequestHead&) { return ServeReady(); }, /*may_block=*/false);
}

HttpResponse MetricsServer::ServeMetrics(const RequestHead& req) const {
  if (options_.authorizer) {
    HttpResponse denied;
    if (DenyUnlessAuthorized(*options_.authorizer, req, &denied)) return denied;
  }
  HttpResponse r;
  r.content_type = kContentType;
  r.body = metrics_.Serialize();
  r.headers.emplace_back("Vary", "Accept-Encoding");
  const std::string* ae = req.Header("Accept-Encoding");
  if (ae != nullptr && AcceptsGzip(*ae)) {
    std::string gz = GzipCompress(r.body);
    if (!gz.empty()) {
      r.body = std::move(gz);
      r.headers.emplace_back("Content-Encoding", "gzip");
    }
  }
  return r;
}

HttpResponse MetricsServer::ServeReady() const {
  Readiness r = options_.readiness ? options_.readiness() : Readiness{true, ""};
  if (r.ready) return HttpResponse::Text(200, "ok");
  return HttpResponse::Text(503, "not ready: " + (r.reason.empty() ? "starting" : r.reason));
}

}  // namespace infertap::serve
