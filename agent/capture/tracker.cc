#include "agent/capture/tracker.hpp"

#include <algorithm>
#include <cstring>

namespace infertap {

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
  if (conns_.size() >= opt_.max_connections) {
    ++stats_.dropped_connections;
    return nullptr;
  }
  auto c = std::make_unique<Conn>();
  c->info.conn_id = h.conn_id;
  c->info.tgid = h.tgid;
  c->info.fd = fd;
  c->info.role = static_cast<Role>(role);
  c->info.open_ts_ns = h.ts_ns;
  Conn* raw = c.get();
  conns_.emplace(h.conn_id, std::move(c));
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
  conns_.erase(it);
}

void ConnectionTracker::OnData(const it_data_event& ev, std::span<const uint8_t> payload) {
  Conn* c = GetOrCreate(ev.hdr, ev.fd, ev.role);
  if (!c) return;
  ++c->info.counters.events;
  const Direction d = static_cast<Direction>(ev.direction);
  DirState& s = c->dir[ev.direction];
  uint64_t pos = ev.pos;
  uint64_t len = ev.len;
  if (len == 0) return;

  if (pos < s.next_pos) {
    // Overlap with what was delivered already: keep only the new tail.
    const uint64_t skip = s.next_pos - pos;
    if (skip >= len) {
      stats_.duplicate_bytes += len;
      return;
    }
    stats_.duplicate_bytes += skip;
    payload = payload.subspan(std::min<uint64_t>(skip, payload.size()));
    pos += skip;
    len -= skip;
  }
  if (pos == s.next_pos) {
    Deliver(*c, d, ev.hdr.ts_ns, len, payload);
    DrainPending(*c, d);
    return;
  }
  // A hole before this event: hold it (bounded) until the hole is filled or declared a gap.
  auto [it, inserted] = s.pending.try_emplace(pos);
  if (!inserted) {
    if (it->second.len >= len) {
      stats_.duplicate_bytes += len;
      return;
    }
    s.pending_bytes -= it->second.bytes.size();
  }
  it->second.ts_ns = ev.hdr.ts_ns;
  it->second.len = len;
  it->second.bytes.assign(payload.begin(), payload.end());
  s.pending_bytes += payload.size();
  while (s.pending_bytes > opt_.max_pending_bytes && !s.pending.empty()) ForceFirstHole(*c, d);
}

void ConnectionTracker::Deliver(Conn& c, Direction d, uint64_t ts, uint64_t len,
                                std::span<const uint8_t> bytes) {
  DirState& s = c.dir[static_cast<int>(d)];
  const uint64_t data_len = std::min<uint64_t>(bytes.size(), len);
  if (data_len > 0) {
    if (d == Direction::kIngress)
      c.info.counters.bytes_in += data_len;
    else
      c.info.counters.bytes_out += data_len;
    stats_.data_bytes += data_len;
    sink_.OnData(c.info, d, ts, bytes.first(data_len));
  }
  if (len > data_len) {
    c.info.counters.gap_bytes += len - data_len;
    stats_.gap_bytes += len - data_len;
    sink_.OnGap(c.info, d, ts, len - data_len);
  }
  s.next_pos += len;
}

void ConnectionTracker::DrainPending(Conn& c, Direction d) {
  DirState& s = c.dir[static_cast<int>(d)];
  while (!s.pending.empty()) {
    auto it = s.pending.begin();
    if (it->first > s.next_pos) return;
    Segment seg = std::move(it->second);
    uint64_t pos = it->first;
    s.pending_bytes -= seg.bytes.size();
    s.pending.erase(it);
    std::span<const uint8_t> bytes(seg.bytes);
    uint64_t len = seg.len;
    if (pos < s.next_pos) {
      const uint64_t skip = s.next_pos - pos;
      if (skip >= len) {
        stats_.duplicate_bytes += len;
        continue;
      }
      stats_.duplicate_bytes += skip;
      bytes = bytes.subspan(std::min<uint64_t>(skip, bytes.size()));
      len -= skip;
    }
    Deliver(c, d, seg.ts_ns, len, bytes);
  }
}

void ConnectionTracker::ForceFirstHole(Conn& c, Direction d) {
  DirState& s = c.dir[static_cast<int>(d)];
  if (s.pending.empty()) return;
  auto it = s.pending.begin();
  if (it->first > s.next_pos) {
    const uint64_t hole = it->first - s.next_pos;
    c.info.counters.gap_bytes += hole;
    stats_.gap_bytes += hole;
    sink_.OnGap(c.info, d, it->second.ts_ns, hole);
    s.next_pos = it->first;
  }
  DrainPending(c, d);
}

void ConnectionTracker::Flush(uint64_t now_ns) {
  for (auto& [id, c] : conns_) {
    for (int d = 0; d < 2; ++d) {
      DirState& s = c->dir[d];
      while (!s.pending.empty() &&
             now_ns >= s.pending.begin()->second.ts_ns + opt_.reorder_window_ns)
        ForceFirstHole(*c, static_cast<Direction>(d));
    }
  }
}

void ConnectionTracker::CloseConn(Conn& c, uint64_t ts, const uint64_t* final_pos) {
  for (int d = 0; d < 2; ++d) {
    DirState& s = c.dir[d];
    while (!s.pending.empty()) ForceFirstHole(c, static_cast<Direction>(d));
    // Bytes the kernel counted whose events never arrived (lost at the very end).
    if (final_pos && final_pos[d] > s.next_pos) {
      const uint64_t hole = final_pos[d] - s.next_pos;
      c.info.counters.gap_bytes += hole;
      stats_.gap_bytes += hole;
      sink_.OnGap(c.info, static_cast<Direction>(d), ts, hole);
      s.next_pos = final_pos[d];
    }
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
}

}  // namespace infertap
