#include "agent/capture/tracker.hpp"

#include <algorithm>
#include <cstring>

namespace infertap {

// Where one direction's reassembled bytes go: counters, then the sink.
class ConnectionTracker::DirOutput : public StreamReassembler::Output {
 public:
  DirOutput(ConnectionTracker& t, Conn& c, Direction d) : t_(t), c_(c), d_(d) {}
  void OnRange(uint64_t ts, uint64_t len, std::span<const uint8_t> bytes) override {
    if (!bytes.empty()) {
      (d_ == Direction::kIngress ? c_.info.counters.bytes_in : c_.info.counters.bytes_out) +=
          bytes.size();
      t_.stats_.data_bytes += bytes.size();
      t_.sink_.OnData(c_.info, d_, ts, bytes);
    }
    if (len > bytes.size()) OnHole(ts, len - bytes.size());  // bytes the kernel did not copy
  }
  void OnHole(uint64_t ts, uint64_t len) override {
    c_.info.counters.gap_bytes += len;
    t_.stats_.gap_bytes += len;
    t_.sink_.OnGap(c_.info, d_, ts, len);
  }
  void OnDuplicate(uint64_t len) override { t_.stats_.duplicate_bytes += len; }

 private:
  ConnectionTracker& t_;
  Conn& c_;
  Direction d_;
};

ConnectionTracker::ConnectionTracker(StreamSink& sink, TrackerOptions options)
    : sink_(sink), opt_(options) {}

ConnectionTracker::~ConnectionTracker() = default;

void ConnectionTracker::OnEvent(std::span<const uint8_t> record) {
  // Everything here is bounds-checked: records come from the kernel or from a file.
  if (record.size() < sizeof(it_event_header)) {
    ++stats_.malformed;
    return;
  }
  it_event_header h;
  std::memcpy(&h, record.data(), sizeof(h));
  if (h.version != IT_ABI_VERSION) {
    ++stats_.malformed;
    return;
  }
  switch (h.type) {
    case IT_EV_DATA: {
      if (record.size() < sizeof(it_data_event)) break;
      it_data_event ev;
      std::memcpy(&ev, record.data(), sizeof(ev));
      if (ev.cap_len > ev.len || ev.cap_len > IT_CHUNK_MAX ||
          record.size() < sizeof(it_data_event) + ev.cap_len || ev.direction > 1)
        break;
      ++stats_.events;
      newest_ts_ = std::max<uint64_t>(newest_ts_, h.ts_ns);
      OnData(ev, record.subspan(sizeof(it_data_event), ev.cap_len));
      return;
    }
    case IT_EV_OPEN:
    case IT_EV_CLOSE: {
      if (record.size() < sizeof(it_conn_event)) break;
      it_conn_event ev;
      std::memcpy(&ev, record.data(), sizeof(ev));
      ++stats_.events;
      newest_ts_ = std::max<uint64_t>(newest_ts_, h.ts_ns);
      if (h.type == IT_EV_OPEN)
        OnOpen(ev);
      else
        OnClose(ev);
      return;
    }
    default:
      break;
  }
  ++stats_.malformed;
}

ConnectionTracker::Conn* ConnectionTracker::GetOrCreate(const it_event_header& h, uint32_t fd,
                                                        uint8_t role) {
  auto it = conns_.find(h.conn_id);
  if (it != conns_.end()) return it->second.get();
  // fd reuse: the fd can only hold a new connection after close() of the old one, whose close
  // event was then lost (docs/capture.md#loss-accounting). End the old one first.
  if (auto f = by_fd_.find(FdKey(h.tgid, fd)); f != by_fd_.end() && f->second != h.conn_id) {
    if (auto old = conns_.find(f->second); old != conns_.end()) {
      ++stats_.reconciled_closes;
      CloseLost(*old->second, std::max(old->second->last_ts, uint64_t(1)));
      EraseConn(old);
    }
  }
  if (conns_.size() >= opt_.max_connections) {
    ++stats_.dropped_connections;
    return nullptr;
  }
  const StreamReassembler::Limits limits{opt_.max_pending_bytes, 0};
  auto c =
      std::unique_ptr<Conn>(new Conn{{}, {StreamReassembler(limits), StreamReassembler(limits)}});
  c->info.conn_id = h.conn_id;
  c->info.tgid = h.tgid;
  c->info.fd = fd;
  c->info.role = static_cast<Role>(role);
  c->info.open_ts_ns = h.ts_ns;
  c->last_ts = h.ts_ns;
  Conn* raw = c.get();
  conns_.emplace(h.conn_id, std::move(c));
  by_fd_[FdKey(h.tgid, fd)] = h.conn_id;
  return raw;
}

void ConnectionTracker::OnOpen(const it_conn_event& ev) {
  const bool existed = conns_.count(ev.hdr.conn_id) != 0;
  Conn* c = GetOrCreate(ev.hdr, ev.fd, ev.role);
  if (!c) return;
  c->info.family = ev.family;
  c->info.local = EndpointFromAbi(ev.local_addr, ev.local_port);
  c->info.remote = EndpointFromAbi(ev.remote_addr, ev.remote_port);
  c->info.cgroup_id = ev.cgroup_id;
  c->info.addresses_known = true;
  if (!existed) c->info.open_ts_ns = ev.hdr.ts_ns;
  sink_.OnOpen(c->info);
}

void ConnectionTracker::OnClose(const it_conn_event& ev) {
  auto it = conns_.find(ev.hdr.conn_id);
  if (it == conns_.end()) return;  // never saw data: nothing to finish
  const uint64_t final_pos[2] = {ev.bytes_ingress, ev.bytes_egress};
  CloseConn(*it->second, ev.hdr.ts_ns, final_pos);
  EraseConn(it);
}

void ConnectionTracker::EraseConn(
    std::unordered_map<uint64_t, std::unique_ptr<Conn>>::iterator it) {
  const ConnInfo& info = it->second->info;
  if (auto f = by_fd_.find(FdKey(info.tgid, info.fd));
      f != by_fd_.end() && f->second == info.conn_id)
    by_fd_.erase(f);
  conns_.erase(it);
}

void ConnectionTracker::OnData(const it_data_event& ev, std::span<const uint8_t> payload) {
  Conn* c = GetOrCreate(ev.hdr, ev.fd, ev.role);
  if (!c) return;
  ++c->info.counters.events;
  c->last_ts = std::max(c->last_ts, uint64_t(ev.hdr.ts_ns));
  // Cross-direction order (docs/parsing.md#pairing-and-loss): the pairing of requests with responses reasons
  // about what the other direction had carried by this event's time. Bytes of the other
  // direction held behind a hole that were carried by a syscall no later than this one mean
  // that hole was lost in the ring (events leave the ring in about time order): declare it now,
  // before these bytes, instead of after the reorder window.
  {
    const int o = 1 - ev.direction;
    StreamReassembler& other = c->dir[o];
    DirOutput oout(*this, *c, static_cast<Direction>(o));
    while (other.has_pending() && other.first_pending_ts() <= ev.hdr.ts_ns)
      other.ForceFirstHole(oout);
  }
  const Direction d = static_cast<Direction>(ev.direction);
  DirOutput out(*this, *c, d);
  c->dir[ev.direction].Offer(ev.pos, ev.len, ev.hdr.ts_ns, payload, out);
}

void ConnectionTracker::Flush(uint64_t now_ns) {
  for (auto& [id, c] : conns_) {
    for (int d = 0; d < 2; ++d) {
      StreamReassembler& r = c->dir[d];
      DirOutput out(*this, *c, static_cast<Direction>(d));
      while (r.has_pending() && now_ns >= r.first_pending_ts() + opt_.reorder_window_ns)
        r.ForceFirstHole(out);
    }
  }
  ReconcileIdle(now_ns);
}

void ConnectionTracker::ReconcileIdle(uint64_t now_ns) {
  const uint64_t period = opt_.liveness_check_after_ns;
  if (now_ns < last_reconcile_ns_ + period) return;
  last_reconcile_ns_ = now_ns;
  // (id, whether its close was lost: gone from its process, or idle past the timeout with no
  // liveness check to say otherwise). A live connection that is only idle ends cleanly.
  std::vector<std::pair<uint64_t, bool>> ended;
  for (auto& [id, c] : conns_) {
    const uint64_t idle = now_ns > c->last_ts ? now_ns - c->last_ts : 0;
    if (opt_.idle_timeout_ns != 0 && idle >= opt_.idle_timeout_ns) {
      ended.emplace_back(id, !opt_.is_alive || !opt_.is_alive(c->info));
    } else if (opt_.is_alive && idle >= period && !opt_.is_alive(c->info)) {
      ended.emplace_back(id, true);
    }
  }
  std::sort(ended.begin(), ended.end());  // deterministic order for replays
  for (const auto& [id, lost] : ended) {
    auto it = conns_.find(id);
    ++stats_.reconciled_closes;
    if (lost)
      CloseLost(*it->second, now_ns);
    else
      CloseConn(*it->second, now_ns, nullptr);
    EraseConn(it);
  }
}

void ConnectionTracker::CloseLost(Conn& c, uint64_t ts) {
  for (int d = 0; d < 2; ++d) sink_.OnGap(c.info, static_cast<Direction>(d), ts, StreamSink::kUnknownGap);
  CloseConn(c, ts, nullptr);
}

void ConnectionTracker::CloseConn(Conn& c, uint64_t ts, const uint64_t* final_pos) {
  for (int d = 0; d < 2; ++d) {
    DirOutput out(*this, c, static_cast<Direction>(d));
    // Bytes the kernel counted whose events never arrived (lost at the very end) are a hole.
    c.dir[d].FinishAt(final_pos ? final_pos[d] : 0, ts, out);
  }
  sink_.OnClose(c.info, ts);
}

void ConnectionTracker::FinishAll(uint64_t ts_ns) {
  // Deterministic order (by connection id) so replays print the same thing every time.
  std::vector<uint64_t> ids;
  ids.reserve(conns_.size());
  for (auto& [id, c] : conns_) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  for (uint64_t id : ids) CloseConn(*conns_[id], ts_ns, nullptr);
  conns_.clear();
  by_fd_.clear();
}

}  // namespace infertap
