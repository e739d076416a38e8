#include "agent/capture/tracker.hpp"

#include <algorithm>
#include <cstring>

namespace infertap {

ConnectionTracker::ConnectionTracker(ConnConsumerFactory& consumers, TrackerOptions options)
    : consumers_(consumers), opt_(std::move(options)) {}

ConnectionTracker::ConnectionTracker(StreamSink& sink, TrackerOptions options)
    : sink_consumers_(std::make_unique<SinkConsumers>(sink)),
      consumers_(*sink_consumers_),
      opt_(std::move(options)) {}

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
  if (it != conns_.end()) return &it->second;
  // fd reuse: the fd can only hold a new connection after close() of the old one, whose close
  // event was then lost (docs/capture.md#loss-accounting). End the old one first.
  if (auto f = by_fd_.find(FdKey(h.tgid, fd)); f != by_fd_.end() && f->second != h.conn_id) {
    if (auto old = conns_.find(f->second); old != conns_.end()) {
      ++stats_.reconciled_closes;
      old->second.conn.CloseLost(std::max(old->second.last_ts, uint64_t(1)));
      EraseConn(old);
    }
  }
  if (conns_.size() >= opt_.max_connections) {
    ++stats_.dropped_connections;
    return nullptr;
  }
  ConnInfo info;
  info.conn_id = h.conn_id;
  info.tgid = h.tgid;
  info.fd = fd;
  info.role = static_cast<Role>(role);
  info.open_ts_ns = h.ts_ns;
  const StreamReassembler::Limits limits{opt_.max_pending_bytes, 0};
  auto [pos, inserted] = conns_.try_emplace(h.conn_id, info, limits, consumers_, stats_, h.ts_ns);
  by_fd_[FdKey(h.tgid, fd)] = h.conn_id;
  return &pos->second;
}

void ConnectionTracker::OnOpen(const it_conn_event& ev) {
  const bool existed = conns_.count(ev.hdr.conn_id) != 0;
  Conn* c = GetOrCreate(ev.hdr, ev.fd, ev.role);
  if (!c) return;
  ConnInfo& info = c->conn.info();
  info.family = ev.family;
  info.local = EndpointFromAbi(ev.local_addr, ev.local_port);
  info.remote = EndpointFromAbi(ev.remote_addr, ev.remote_port);
  info.cgroup_id = ev.cgroup_id;
  info.addresses_known = true;
  if (!existed) info.open_ts_ns = ev.hdr.ts_ns;
  c->conn.Opened();
}

void ConnectionTracker::OnClose(const it_conn_event& ev) {
  auto it = conns_.find(ev.hdr.conn_id);
  if (it == conns_.end()) return;  // never saw data: nothing to finish
  const uint64_t final_pos[2] = {ev.bytes_ingress, ev.bytes_egress};
  it->second.conn.Close(ev.hdr.ts_ns, final_pos);
  EraseConn(it);
}

void ConnectionTracker::EraseConn(ConnMap::iterator it) {
  const ConnInfo& info = it->second.conn.info();
  if (auto f = by_fd_.find(FdKey(info.tgid, info.fd));
      f != by_fd_.end() && f->second == info.conn_id)
    by_fd_.erase(f);
  conns_.erase(it);
}

void ConnectionTracker::OnData(const it_data_event& ev, std::span<const uint8_t> payload) {
  Conn* c = GetOrCreate(ev.hdr, ev.fd, ev.role);
  if (!c) return;
  ++c->conn.info().counters.events;
  c->last_ts = std::max(c->last_ts, uint64_t(ev.hdr.ts_ns));
  // Cross-direction order (docs/parsing.md#pairing-and-loss): the pairing of requests with
  // responses reasons about what the other direction had carried by this event's time. Bytes of
  // the other direction held behind a hole that were carried by a syscall no later than this one
  // mean that hole was lost in the ring (events leave the ring in about time order): declare it
  // now, before these bytes, instead of after the reorder window.
  const Direction d = static_cast<Direction>(ev.direction);
  c->conn.DeclareHolesBefore(d == Direction::kIngress ? Direction::kEgress : Direction::kIngress,
                             ev.hdr.ts_ns);
  c->conn.Offer(d, ev.pos, ev.len, ev.hdr.ts_ns, payload);
}

void ConnectionTracker::Flush(uint64_t now_ns) {
  for (auto& [id, c] : conns_) c.conn.DeclareHolesOlderThan(now_ns, opt_.reorder_window_ns);
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
    const uint64_t idle = now_ns > c.last_ts ? now_ns - c.last_ts : 0;
    if (opt_.idle_timeout_ns != 0 && idle >= opt_.idle_timeout_ns) {
      ended.emplace_back(id, !opt_.is_alive || !opt_.is_alive(c.conn.info()));
    } else if (opt_.is_alive && idle >= period && !opt_.is_alive(c.conn.info())) {
      ended.emplace_back(id, true);
    }
  }
  std::sort(ended.begin(), ended.end());  // deterministic order for replays
  for (const auto& [id, lost] : ended) {
    auto it = conns_.find(id);
    ++stats_.reconciled_closes;
    if (lost)
      it->second.conn.CloseLost(now_ns);
    else
      it->second.conn.Close(now_ns, nullptr);
    EraseConn(it);
  }
}

void ConnectionTracker::FinishAll(uint64_t ts_ns) {
  // Deterministic order (by connection id) so replays print the same thing every time.
  std::vector<uint64_t> ids;
  ids.reserve(conns_.size());
  for (auto& [id, c] : conns_) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  for (uint64_t id : ids) conns_.find(id)->second.conn.Close(ts_ns, nullptr);
  conns_.clear();
  by_fd_.clear();
}

}  // namespace infertap
