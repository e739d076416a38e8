#include "agent/pipeline/pipeline.hpp"

#include <deque>

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
  // The entry the connection was attributed with (null: none) and the table that holds it.
  std::shared_ptr<const AttributionTable> table;
  const EndpointAttribution* attribution = nullptr;
  // The model name each request counted in flight was counted under, so its record and the
  // release of running_requests use that same name even if the model mapping changed while it
  // was in flight (a topology update). Key: the request's start and target. Bounded by the
  // assembler's pipeline cap: every counted request ends in a record.
  struct CountedName {
    uint64_t start_ns;
    std::string target, model;
  };
  std::deque<CountedName> counted;
  std::unique_ptr<ConnObserver> observer;
  std::unique_ptr<ExchangeAssembler> assembler;
};

Pipeline::Pipeline(PipelineOptions options, Metrics* metrics)
    : opt_(std::move(options)), metrics_(metrics) {
  auto t = std::make_shared<AttributionTable>();
  t->models = opt_.model_alias;
  table_ = std::move(t);
}

Pipeline::~Pipeline() = default;

void Pipeline::SetEndpoints(std::vector<EndpointAttribution> endpoints) {
  auto t = std::make_shared<AttributionTable>();
  t->endpoints = std::move(endpoints);
  t->models = opt_.model_alias;
  SetAttribution(std::move(t));
}

void Pipeline::SetAttribution(std::shared_ptr<const AttributionTable> table) {
  if (table) table_ = std::move(table);
}

const EndpointAttribution* Pipeline::Attribute(const AttributionTable& table,
                                               const ConnInfo& conn) {
  if (!conn.addresses_known) return nullptr;
  const Endpoint& server = conn.role == Role::kClient ? conn.remote : conn.local;
  const EndpointAttribution* wildcard = nullptr;
  for (const auto& e : table.endpoints) {
    if (e.endpoint.port != server.port) continue;
    if (e.endpoint.addr == server.addr) return &e;
    if (e.endpoint.is_wildcard() && !wildcard) wildcard = &e;
  }
  return wildcard;
}

void Pipeline::Attribute(ConnState& st) const {
  st.table = table_;
  st.attribution = Attribute(*st.table, st.info);
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
      Attribute(*it->second);
    }
    return *it->second;
  }
  auto st = std::make_unique<ConnState>();
  st->info = conn;
  Attribute(*st);
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
  // Model names follow the current table for the connection's pool (a mapping can change
  // while a keep-alive connection lives); a pool that left uses the table it was opened with.
  const AttributionTable* t = table_.get();
  if (st.attribution && st.table && !t->pool_models.count(rec.pool) &&
      st.table->pool_models.count(rec.pool))
    t = st.table.get();
  rec.model_name = rec.target_model_name;
  if (auto p = t->pool_models.find(rec.pool); p != t->pool_models.end()) {
    if (auto m = p->second.find(rec.target_model_name); m != p->second.end()) {
      rec.model_name = m->second;
      return;
    }
  }
  if (auto m = t->models.find(rec.target_model_name); m != t->models.end())
    rec.model_name = m->second;
}

// The assembler calls OnRequestReceived with the exchange's final target
// (docs/metrics.md#seed-metrics) and never changes it afterwards, so Decorate gives the same pair
// here and in OnRecord: the in-flight entry and running_requests are released under the key they
// were taken with.
void Pipeline::ConnObserver::OnRequestReceived(const RequestRecord& partial) {
  ++p_.stats_.requests_received;
  RequestRecord rec = partial;
  p_.Decorate(st_, rec);
  st_.counted.push_back({rec.start_ns, rec.target_model_name, rec.model_name});
  ++p_.in_flight_[InFlightKey{rec.pool, rec.model_name, rec.target_model_name}];
  if (p_.metrics_) p_.metrics_->OnRequestReceived(rec);
}

void Pipeline::ConnObserver::OnRecord(RequestRecord&& rec) {
  ++p_.stats_.records;
  p_.Decorate(st_, rec);
  if (rec.counted_in_flight) {
    for (auto c = st_.counted.begin(); c != st_.counted.end(); ++c) {
      if (c->start_ns == rec.start_ns && c->target == rec.target_model_name) {
        rec.model_name = c->model;
        st_.counted.erase(c);
        break;
      }
    }
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
