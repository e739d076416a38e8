// The pipeline stage between the connections and everything that consumes request records
// (docs/architecture.md data flow): ordered byte streams in, attributed records out.
//
// The Pipeline is the factory of each Connection's consumer (agent/capture/connection.hpp): one
// per connection, owned by the Connection (live: ConnectionTracker; pcap replay: TcpFlows), made of
// the connection's ExchangeAssembler, its attribution and the model names its requests were
// counted under. The Pipeline itself keeps no per-connection map; it holds what every connection
// shares: the attribution table, the listeners and the counters. Requests in flight are counted
// once, by Metrics (Metrics::InFlight), from the OnRequestReceived/OnRecord calls made here.
//
//   Connection ──ConnConsumer──▶ Pipeline::Conn { ExchangeAssembler, attribution }
//                                        │ records
//                                        ▼
//                               Metrics + RecordListeners
//
// Runs on one thread (the capture loop's, or replay's). Not thread-safe by design: one owner.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "agent/capture/connection.hpp"
#include "parsers/exchange.hpp"
#include "parsers/record.hpp"

namespace infertap {

class Metrics;

// Who serves behind an endpoint (docs/attribution.md): the pool it belongs to and, in a cluster,
// the pod.
struct EndpointAttribution {
  Endpoint endpoint;  // wildcard address (all zeros) matches any address on that port
  std::string pool = "default";
  std::string ns;
  std::string pod;
};

// The attribution table (docs/attribution.md): immutable once built, swapped whole. A
// connection keeps the entry it was attributed with at open (and the table holding it) until it
// closes, even when a later table no longer has its endpoint.
struct AttributionTable {
  std::vector<EndpointAttribution> endpoints;
  // target_model_name → model_name. A pool's own mapping (key: pool label) wins over `models`,
  // which applies to every pool; a target found in neither is its own model_name. A connection
  // whose pool has no entry here (it left) uses the mapping of the table it opened with.
  std::map<std::string, std::map<std::string, std::string>> pool_models;
  std::map<std::string, std::string> models;
};

struct PipelineOptions {
  ExchangeConfig exchange;
  std::string node;
  // --model-alias TARGET=MODEL: client-facing model_name for a target_model_name (the
  // `models` of the table SetEndpoints builds).
  std::map<std::string, std::string> model_alias;
  // Pool of connections that match no endpoint (replay of a pcap without --target); "" = none.
  std::string default_pool;
};

class RecordListener {
 public:
  virtual ~RecordListener() = default;
  virtual void OnRecord(const RequestRecord& record) = 0;
};

struct PipelineStats {
  uint64_t records = 0;
  uint64_t requests_received = 0;
  uint64_t ignored_exchanges = 0;
  uint64_t parse_errors = 0;
};

class Pipeline : public ConnConsumerFactory {
 public:
  // `metrics` may be null (e.g. `replay --records`); listeners are not owned.
  Pipeline(PipelineOptions options, Metrics* metrics);
  ~Pipeline() override;

  void AddListener(RecordListener* listener) { listeners_.push_back(listener); }
  // Replaces the table with `endpoints` and options.model_alias. Open connections keep theirs.
  void SetEndpoints(std::vector<EndpointAttribution> endpoints);
  // Replaces the table (call on the pipeline's thread). Open connections keep theirs.
  void SetAttribution(std::shared_ptr<const AttributionTable> table);
  const std::shared_ptr<const AttributionTable>& attribution() const { return table_; }

  // The consumer of one connection; `conn` is the Connection's and outlives it.
  std::unique_ptr<ConnConsumer> NewConsumer(const ConnInfo& conn) override;

  // Connections whose consumer is alive (opened, not yet closed).
  size_t connections() const { return live_connections_; }
  const PipelineStats& stats() const { return stats_; }

 private:
  class Conn;

  static const EndpointAttribution* Attribute(const AttributionTable& table, const ConnInfo& conn);

  PipelineOptions opt_;
  Metrics* metrics_;
  std::vector<RecordListener*> listeners_;
  std::shared_ptr<const AttributionTable> table_;
  size_t live_connections_ = 0;
  PipelineStats stats_;
};

}  // namespace infertap
