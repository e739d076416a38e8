#include "agent/pipeline/pipeline.hpp"

#include "agent/metrics/metrics.hpp"

namespace infertap {

// Per-connection glue: the assembler's callbacks, decorated with attribution.
class Pipeline::ConnObserver : public ExchangeObserver {
 public:
  ConnObserver(Pipeline& p, ConnState& st) : p_(p), st_(st) {}
  void OnRequestReceived(const RequestRecord& partial) override;
  void OnRecord(RequestRecord&& rec) override;
  void OnIgnoredExchange() override {
    ++p_.stats_.ignored_exchanges;
    if (p_.metrics_) p_.metrics_->IncHttpExchangesIgnored();
  }
  void OnParseError(std::string_view reason) override {
    ++p_.stats_.parse_errors;
    if (p_.metrics_) p_.metrics_->IncParseErrors(reason);
  }

 private:
  Pipeline& p_;
  ConnState& st_;
};

struct Pipeline::ConnState {
  ConnInfo info;
  const EndpointAttribution* attribution = nullptr;
  std::unique_ptr<ConnObserver> observer;
  std::unique_ptr<ExchangeAssembler> assembler;
};

Pipeline::Pipeline(PipelineOptions options, Metrics* metrics)
    : opt_(std::move(options)), metrics_(metrics) {}

Pipeline::~Pipeline() = default;

void Pipeline::SetEndpoints(std::vector<EndpointAttribution> endpoints) {
  endpoints_ = std::move(endpoints);
  // Existing connections keep pointing into the new table.
  for (auto& [id, st] : conns_) st->attribution = Attribute(st->info);
}

const EndpointAttribution* Pipeline::Attribute(const ConnInfo& conn) const {
  if (!conn.addresses_known) return nullptr;
  const Endpoint& server = conn.role == Role::kClient ? conn.remote : conn.local;
  const EndpointAttribution* wildcard = nullptr;
  for (const auto& e : endpoints_) {
    if (e.endpoint.port != server.port) continue;
    if (e.endpoint.addr == server.addr) return &e;
    if (e.endpoint.is_wildcard() && !wildcard) wildcard = &e;
  }
  return wildcard;
}

bool Pipeline::IsRequestDirection(Role role, Direction dir) {
  // A server reads requests; a client (gateway upstream socket) writes them.
  return role == Role::kClient ? dir == Direction::kEgress : dir == Direction::kIngress;
}

Pipeline::ConnState& Pipeline::State(const ConnInfo& conn) {
  auto it = conns_.find(conn.conn_id);
  if (it != conns_.end()) {
    if (!it->second->info.addresses_known && conn.addresses_known) {
      it->second->info = conn;
      it->second->attribution = Attribute(conn);
    }
    return *it->second;
  }
  auto st = std::make_unique<ConnState>();
  st->info = conn;
  st->attribution = Attribute(conn);
  st->observer = std::make_unique<ConnObserver>(*this, *st);
  st->assembler = std::make_unique<ExchangeAssembler>(opt_.exchange, *st->observer);
  ConnState& ref = *st;
  conns_.emplace(conn.conn_id, std::move(st));
  return ref;
}

void Pipeline::Decorate(const ConnState& st, RequestRecord& rec) const {
  rec.node = opt_.node;
  rec.role = std::string(RoleName(st.info.role));
  if (st.attribution) {
    rec.pool = st.attribution->pool;
    rec.ns = st.attribution->ns;
    rec.pod = st.attribution->pod;
  } else {
    rec.pool = opt_.default_pool;
  }
  auto alias = opt_.model_alias.find(rec.target_model_name);
  rec.model_name = alias != opt_.model_alias.end() ? alias->second : rec.target_model_name;
}

// The assembler calls OnRequestReceived with the exchange's final target
// (docs/metrics.md#seed-metrics) and never changes it afterwards, so Decorate gives the same pair
// here and in OnRecord: the in-flight entry and running_requests are released under the key they
// were taken with.
void Pipeline::ConnObserver::OnRequestReceived(const RequestRecord& partial) {
  ++p_.stats_.requests_received;
  RequestRecord rec = partial;
  p_.Decorate(st_, rec);
  ++p_.in_flight_[InFlightKey{rec.pool, rec.model_name, rec.target_model_name}];
  if (p_.metrics_) p_.metrics_->OnRequestReceived(rec);
}

void Pipeline::ConnObserver::OnRecord(RequestRecord&& rec) {
  ++p_.stats_.records;
  p_.Decorate(st_, rec);
  if (rec.counted_in_flight) {
    auto it = p_.in_flight_.find(InFlightKey{rec.pool, rec.model_name, rec.target_model_name});
    if (it != p_.in_flight_.end() && --it->second <= 0) p_.in_flight_.erase(it);
  }
  if (p_.metrics_) p_.metrics_->OnRecord(rec);
  for (RecordListener* l : p_.listeners_) l->OnRecord(rec);
}

void Pipeline::OnOpen(const ConnInfo& conn) { State(conn); }

void Pipeline::OnData(const ConnInfo& conn, Direction dir, uint64_t ts_ns,
                      std::span<const uint8_t> bytes) {
  ConnState& st = State(conn);
  if (IsRequestDirection(st.info.role, dir))
    st.assembler->OnRequestBytes(ts_ns, bytes);
  else
    st.assembler->OnResponseBytes(ts_ns, bytes);
}

void Pipeline::OnGap(const ConnInfo& conn, Direction dir, uint64_t ts_ns, uint64_t len) {
  ConnState& st = State(conn);
  if (IsRequestDirection(st.info.role, dir))
    st.assembler->OnRequestGap(ts_ns, len);
  else
    st.assembler->OnResponseGap(ts_ns, len);
}

void Pipeline::OnClose(const ConnInfo& conn, uint64_t ts_ns) {
  auto it = conns_.find(conn.conn_id);
  if (it == conns_.end()) return;
  it->second->assembler->OnClose(ts_ns);
  conns_.erase(it);
}

}  // namespace infertap
