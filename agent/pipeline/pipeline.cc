#include "agent/pipeline/pipeline.hpp"

#include <vector>

#include "agent/metrics/metrics.hpp"

namespace infertap {

// One connection's consumer: its exchange assembler (observed by the Conn itself), decorated
// with the attribution the connection got when its addresses became known.
class Pipeline::Conn final : public ConnConsumer, private ExchangeObserver {
 public:
  Conn(Pipeline& p, const ConnInfo& info) : p_(p), info_(info), assembler_(p.opt_.exchange, *this) {
    ++p_.live_connections_;
    Attribute();
  }
  ~Conn() override { --p_.live_connections_; }

  // ConnConsumer.
  void OnOpen() override {
    // The open event may come after the first data (the tracker made the connection from a data
    // event): attribute again now that the addresses are known, once.
    if (!attributed_with_addresses_) Attribute();
  }
  void OnData(Direction dir, uint64_t ts_ns, std::span<const uint8_t> bytes) override {
    if (IsRequestDirection(dir))
      assembler_.OnRequestBytes(ts_ns, bytes);
    else
      assembler_.OnResponseBytes(ts_ns, bytes);
  }
  void OnGap(Direction dir, uint64_t ts_ns, uint64_t len) override {
    if (IsRequestDirection(dir))
      assembler_.OnRequestGap(ts_ns, len);
    else
      assembler_.OnResponseGap(ts_ns, len);
  }
  void OnClose(uint64_t ts_ns) override { assembler_.OnClose(ts_ns); }

 private:
  // ExchangeObserver.
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

  // True when the bytes of `dir` are the client→server (request) direction: a server reads
  // requests; a client (gateway upstream socket) writes them.
  bool IsRequestDirection(Direction dir) const {
    return info_.role == Role::kClient ? dir == Direction::kEgress : dir == Direction::kIngress;
  }
  void Attribute() {
    table_ = p_.table_;
    attribution_ = Pipeline::Attribute(*table_, info_);
    attributed_with_addresses_ = info_.addresses_known;
  }
  void Decorate(RequestRecord& rec) const;

  Pipeline& p_;
  const ConnInfo& info_;  // the Connection's
  // The entry the connection was attributed with (null: none) and the table that holds it.
  std::shared_ptr<const AttributionTable> table_;
  const EndpointAttribution* attribution_ = nullptr;
  bool attributed_with_addresses_ = false;
  // The model name each request counted in flight was counted under, so its record and the
  // release of running_requests use that same name even if the model mapping changed while it
  // was in flight (a topology update). Key: the request's start and target. Bounded by the
  // assembler's pipeline cap: every counted request ends in a record. Oldest first; a vector, so
  // a connection allocates nothing for it until a request is counted.
  struct CountedName {
    uint64_t start_ns;
    std::string target, model;
  };
  std::vector<CountedName> counted_;
  ExchangeAssembler assembler_;  // last: it is made with *this as its observer
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

std::unique_ptr<ConnConsumer> Pipeline::NewConsumer(const ConnInfo& conn) {
  return std::make_unique<Conn>(*this, conn);
}

void Pipeline::Conn::Decorate(RequestRecord& rec) const {
  rec.node = p_.opt_.node;
  rec.role = std::string(RoleName(info_.role));
  if (attribution_) {
    rec.pool = attribution_->pool;
    rec.ns = attribution_->ns;
    rec.pod = attribution_->pod;
  } else {
    rec.pool = p_.opt_.default_pool;
  }
  // Model names follow the current table for the connection's pool (a mapping can change
  // while a keep-alive connection lives); a pool that left uses the table it was opened with.
  const AttributionTable* t = p_.table_.get();
  if (attribution_ && table_ && !t->pool_models.count(rec.pool) &&
      table_->pool_models.count(rec.pool))
    t = table_.get();
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
// here and in OnRecord, and the model name is the one counted: Metrics releases the in-flight
// entry and running_requests under the key they were taken with.
void Pipeline::Conn::OnRequestReceived(const RequestRecord& partial) {
  ++p_.stats_.requests_received;
  RequestRecord rec = partial;
  Decorate(rec);
  counted_.push_back({rec.start_ns, rec.target_model_name, rec.model_name});
  if (p_.metrics_) p_.metrics_->OnRequestReceived(rec);
}

void Pipeline::Conn::OnRecord(RequestRecord&& rec) {
  ++p_.stats_.records;
  Decorate(rec);
  if (rec.counted_in_flight) {
    for (auto c = counted_.begin(); c != counted_.end(); ++c) {
      if (c->start_ns == rec.start_ns && c->target == rec.target_model_name) {
        rec.model_name = c->model;
        counted_.erase(c);
        break;
      }
    }
  }
  if (p_.metrics_) p_.metrics_->OnRecord(rec);
  for (RecordListener* l : p_.listeners_) l->OnRecord(rec);
}

}  // namespace infertap
