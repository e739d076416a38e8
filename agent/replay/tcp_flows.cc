#include "agent/replay/tcp_flows.hpp"

#include <algorithm>
#include <cstring>

namespace infertap::pcap {
namespace {

// Charged per buffered segment on top of its bytes: bounds the map even when every segment is
// tiny or entirely cut by the snaplen.
constexpr size_t kSegmentOverhead = 64;

int Idx(Direction d) { return static_cast<int>(d); }
Direction Other(Direction d) {
  return d == Direction::kIngress ? Direction::kEgress : Direction::kIngress;
}

bool Matches(const Endpoint& want, const Endpoint& ep) {
  return want.port == ep.port && (want.is_wildcard() || want.addr == ep.addr);
}

bool Less(const Endpoint& x, const Endpoint& y) {
  const int c = std::memcmp(x.addr.data(), y.addr.data(), x.addr.size());
  return c != 0 ? c < 0 : x.port < y.port;
}

}  // namespace

size_t TcpFlows::KeyHash::operator()(const Key& k) const {
  // FNV-1a over both endpoints: cheap, and the key is not attacker-chosen in a way that matters
  // for an offline replay with a flow cap.
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](const Endpoint& e) {
    for (uint8_t b : e.addr) h = (h ^ b) * 1099511628211ull;
    h = (h ^ (e.port & 0xff)) * 1099511628211ull;
    h = (h ^ (e.port >> 8)) * 1099511628211ull;
  };
  mix(k.a);
  mix(k.b);
  return static_cast<size_t>(h);
}

TcpFlows::TcpFlows(std::vector<Endpoint> servers, ConnConsumerFactory& consumers,
                   FlowOptions options)
    : servers_(std::move(servers)), consumers_(consumers), opt_(options) {}

TcpFlows::~TcpFlows() = default;

FlowStats TcpFlows::stats() const {
  FlowStats s = stats_;
  s.bytes = totals_.data_bytes;
  s.gap_bytes = totals_.gap_bytes;
  s.retransmitted_bytes += totals_.duplicate_bytes;
  return s;
}

size_t TcpFlows::open_flows() const {
  return static_cast<size_t>(std::count_if(flows_.begin(), flows_.end(),
                                           [](const auto& kv) { return !kv.second.closed(); }));
}

TcpFlows::Key TcpFlows::MakeKey(const Endpoint& x, const Endpoint& y) {
  return Less(x, y) ? Key{x, y} : Key{y, x};
}

bool TcpFlows::ChooseServer(const TcpSegment& seg, Endpoint* server) const {
  if (!servers_.empty()) {
    for (const Endpoint& s : servers_) {
      if (Matches(s, seg.dst)) {
        *server = seg.dst;
        return true;
      }
    }
    for (const Endpoint& s : servers_) {
      if (Matches(s, seg.src)) {
        *server = seg.src;
        return true;
      }
    }
    return false;
  }
  const bool syn = (seg.flags & kTcpSyn) != 0;
  const bool ack = (seg.flags & kTcpAck) != 0;
  if (syn && !ack) {
    *server = seg.dst;
  } else if (syn && ack) {
    *server = seg.src;
  } else {
    // No handshake captured: servers listen on low, fixed ports and clients use ephemeral ones
    // (Linux: 32768-60999), so the lower port is the best guess left.
    *server = seg.src.port < seg.dst.port ? seg.src : seg.dst;
  }
  return true;
}

TcpFlows::Flow* TcpFlows::NewFlow(const Key& key, const TcpSegment& seg, const Endpoint& server,
                                  uint64_t ts_ns) {
  if (flows_.size() >= opt_.max_flows) {
    std::erase_if(flows_, [](const auto& kv) { return kv.second.closed(); });
    if (flows_.size() >= opt_.max_flows) return nullptr;
  }
  ConnInfo info;
  info.conn_id = next_conn_id_++;
  info.role = Role::kServer;
  info.family = seg.family;
  info.local = server;
  info.remote = seg.src == server ? seg.dst : seg.src;
  info.open_ts_ns = ts_ns;
  info.addresses_known = true;
  auto [it, inserted] = flows_.try_emplace(
      key, info, StreamReassembler::Limits{opt_.max_pending_bytes, kSegmentOverhead}, consumers_,
      totals_, server);
  ++stats_.flows;
  it->second.conn.Opened();
  return &it->second;
}

void TcpFlows::OnSegment(const TcpSegment& seg, uint64_t ts_ns) { Process(seg, ts_ns, nullptr); }

void TcpFlows::OnSegment(const TcpSegment& seg, uint64_t ts_ns, const Endpoint& server) {
  Process(seg, ts_ns, &server);
}

void TcpFlows::OnSegment(const TcpSegment& seg, uint64_t ts_ns, const Endpoint& server,
                         uint64_t tag) {
  Process(seg, ts_ns, &server, tag);
}

void TcpFlows::Process(const TcpSegment& seg, uint64_t ts_ns, const Endpoint* known_server,
                       uint64_t tag) {
  const Key key = MakeKey(seg.src, seg.dst);
  const bool syn_only = (seg.flags & (kTcpSyn | kTcpAck)) == kTcpSyn;
  auto it = flows_.find(key);
  Flow* f = it == flows_.end() ? nullptr : &it->second;

  if (f && f->closed()) {
    // Late packets of a finished connection (the last ACK, a retransmitted FIN or data) belong to
    // it, not to a new one; only a fresh SYN reuses the 4-tuple.
    if (!syn_only) {
      stats_.retransmitted_bytes += seg.payload_len;
      return;
    }
    flows_.erase(it);
    f = nullptr;
  }
  if (f && syn_only) {
    const Direction d = seg.src == f->server ? Direction::kEgress : Direction::kIngress;
    const DirState& s = f->dir[Idx(d)];
    if (!(s.syn_seen && s.isn == seg.seq)) {
      // A SYN with a new ISN on a live flow: the 4-tuple was reused and the capture missed the
      // end of the previous connection. Finish that one before starting over.
      CloseFlow(*f, ts_ns);
      flows_.erase(key);
      f = nullptr;
    }
  }
  if (!f) {
    Endpoint server;
    if (known_server) {
      server = *known_server;
    } else if (!ChooseServer(seg, &server)) {
      ++stats_.untraced_packets;
      return;
    }
    // A bare ACK, FIN or RST of a connection never seen carries nothing worth a connection.
    if ((seg.flags & kTcpSyn) == 0 && seg.payload_len == 0) return;
    if ((seg.flags & kTcpRst) != 0) return;
    f = NewFlow(key, seg, server, ts_ns);
    if (!f) {
      ++stats_.dropped_packets;
      return;
    }
    f->tag = tag;
  }

  f->last_ts = ts_ns;
  const Direction d = seg.src == f->server ? Direction::kEgress : Direction::kIngress;
  DirState& s = f->dir[Idx(d)];
  if ((seg.flags & kTcpRst) != 0) {
    // Whatever was in flight is lost for good; RST payload (RFC 5961 diagnostics) is not stream
    // data.
    CloseFlow(*f, ts_ns);
    return;
  }
  uint32_t data_seq = seg.seq;
  if ((seg.flags & kTcpSyn) != 0) {
    if (!s.started) {
      s.started = true;
      s.syn_seen = true;
      s.isn = seg.seq;
      s.seq0 = seg.seq + 1;
    }
    data_seq = seg.seq + 1;  // the SYN takes one sequence number; TFO data follows it
  }
  if (seg.payload_len > 0) OnPayload(*f, d, data_seq, seg, ts_ns);
  if ((seg.flags & kTcpFin) != 0) {
    if (!s.started) {
      // Capture started mid-connection and this side never sent data: its stream is empty.
      s.started = true;
      s.seq0 = data_seq;
    }
    if (!s.fin_seen) {
      const int64_t fin = PositionOf(*f, d, data_seq) + seg.payload_len;
      s.fin_seen = true;
      s.fin_pos = static_cast<uint64_t>(
          std::max<int64_t>(fin, static_cast<int64_t>(f->conn.stream(d).next_pos())));
    }
  }
  if ((seg.flags & kTcpAck) != 0) {
    DirState& peer = f->dir[Idx(Other(d))];
    if (!peer.acked_valid || static_cast<int32_t>(seg.ack - peer.acked) > 0) {
      peer.acked = seg.ack;
      peer.acked_ts = ts_ns;
    }
    peer.acked_valid = true;
  }
  UpdateDone(*f, d, ts_ns);
  UpdateDone(*f, Other(d), ts_ns);
  if (f->dir[0].done && f->dir[1].done) CloseFlow(*f, ts_ns);
}

int64_t TcpFlows::PositionOf(const Flow& f, Direction d, uint32_t seq) {
  // Signed 32-bit distance from the next expected sequence number: correct across the 2^32 wrap
  // as long as the segment is within 2 GiB of it, which TCP's window guarantees.
  const DirState& s = f.dir[Idx(d)];
  const uint64_t next_pos = f.conn.stream(d).next_pos();
  const uint32_t next_seq = s.seq0 + static_cast<uint32_t>(next_pos);
  return static_cast<int64_t>(next_pos) + static_cast<int32_t>(seq - next_seq);
}

void TcpFlows::OnPayload(Flow& f, Direction d, uint32_t seq, const TcpSegment& seg,
                         uint64_t ts_ns) {
  DirState& s = f.dir[Idx(d)];
  if (!s.started) {
    // No SYN captured for this side: its stream starts at the first data segment seen.
    s.started = true;
    s.seq0 = seq;
  }
  std::span<const uint8_t> bytes = seg.payload;
  uint64_t len = seg.payload_len;
  if (s.done) {
    stats_.retransmitted_bytes += len;
    return;
  }
  int64_t pos = PositionOf(f, d, seq);
  const int64_t next = static_cast<int64_t>(f.conn.stream(d).next_pos());
  if (pos + static_cast<int64_t>(len) <= next) {
    // Entirely old. A keep-alive probe is one garbage byte at next-1 (RFC 1122 4.2.3.6): not a
    // retransmission of anything the peer needs, so not counted as one.
    const bool keepalive = len == 1 && pos == next - 1;
    if (!keepalive) stats_.retransmitted_bytes += len;
    return;
  }
  if (pos < next) {
    // Overlapping retransmission (repacketized): keep only the new tail.
    const uint64_t skip = static_cast<uint64_t>(next - pos);
    stats_.retransmitted_bytes += skip;
    bytes = bytes.subspan(std::min<uint64_t>(skip, bytes.size()));
    len -= skip;
    pos = next;
  }
  const uint64_t upos = static_cast<uint64_t>(pos);
  if (s.fin_seen) {
    // Nothing exists past the FIN; bytes there are corrupt or a different connection's.
    if (upos >= s.fin_pos) return;
    len = std::min<uint64_t>(len, s.fin_pos - upos);
    bytes = bytes.first(std::min<uint64_t>(bytes.size(), len));
  }
  if (!bytes.empty()) ++f.conn.info().counters.events;
  f.conn.Offer(d, upos, len, ts_ns, bytes);
}

void TcpFlows::UpdateDone(Flow& f, Direction d, uint64_t ts_ns) {
  DirState& s = f.dir[Idx(d)];
  if (s.done || !s.fin_seen) return;
  if (f.conn.stream(d).next_pos() < s.fin_pos && s.acked_valid &&
      PositionOf(f, d, s.acked) >= static_cast<int64_t>(s.fin_pos) + 1) {
    // The peer acknowledged the FIN, so it received every byte before it: whatever is still
    // missing here was lost by the capture, not the network, and will never be retransmitted.
    f.conn.FinishStream(d, s.fin_pos, ts_ns);
  }
  if (f.conn.stream(d).next_pos() >= s.fin_pos) {
    s.done = true;
    f.conn.DropPending(d);
  }
}

void TcpFlows::CloseFlow(Flow& f, uint64_t ts_ns) {
  uint64_t final_pos[2];
  for (Direction d : {Direction::kIngress, Direction::kEgress}) {
    const DirState& s = f.dir[Idx(d)];
    final_pos[Idx(d)] = s.fin_seen ? s.fin_pos : 0;
  }
  f.conn.Close(ts_ns, final_pos);
  f.closed_ts = ts_ns;
}

void TcpFlows::FlushFlow(Flow& f, uint64_t now_ns) {
  f.conn.DeclareHolesOlderThan(now_ns, opt_.reorder_window_ns);
  for (Direction d : {Direction::kIngress, Direction::kEgress}) {
    DirState& s = f.dir[Idx(d)];
    if (!s.started || s.done || !s.acked_valid || f.conn.stream(d).has_pending()) continue;
    if (now_ns < s.acked_ts + opt_.reorder_window_ns) continue;
    // The peer acknowledged bytes this stream never delivered: they reached the peer, so the
    // capture lost them (a full ring). Every event is ordered in the ring by when the kernel
    // emitted it and a packet's events precede the peer's answer to it, so after the window
    // they will not come: a gap of exactly the missing length, instead of waiting for the next
    // byte of the stream (which, on an idle keep-alive connection, may never come).
    int64_t acked = PositionOf(f, d, s.acked);
    if (s.fin_seen) acked = std::min<int64_t>(acked, static_cast<int64_t>(s.fin_pos));
    const uint64_t next = f.conn.stream(d).next_pos();
    if (acked <= static_cast<int64_t>(next)) continue;
    stats_.acked_gap_bytes += static_cast<uint64_t>(acked) - next;
    f.conn.FinishStream(d, static_cast<uint64_t>(acked), s.acked_ts);
  }
  UpdateDone(f, Direction::kIngress, now_ns);
  UpdateDone(f, Direction::kEgress, now_ns);
  if (f.dir[0].done && f.dir[1].done) CloseFlow(f, now_ns);
}

void TcpFlows::Flush(uint64_t now_ns) {
  for (auto it = flows_.begin(); it != flows_.end();) {
    Flow& f = it->second;
    if (f.closed()) {
      if (opt_.tombstone_ns > 0 && now_ns >= f.closed_ts + opt_.tombstone_ns) {
        it = flows_.erase(it);
        continue;
      }
    } else if (opt_.idle_timeout_ns > 0 && now_ns >= f.last_ts + opt_.idle_timeout_ns) {
      // Ended and forgotten, not kept as a tombstone: if the connection is alive after all (an
      // idle keep-alive connection), its next segment starts a new flow mid-connection.
      CloseFlow(f, now_ns);
      ++stats_.idle_closed;
      it = flows_.erase(it);
      continue;
    } else {
      FlushFlow(f, now_ns);
    }
    ++it;
  }
}

void TcpFlows::FinishAll(uint64_t ts_ns) {
  // Deterministic order (by connection id) so a replay prints the same thing every time.
  std::vector<Flow*> open;
  for (auto& [key, f] : flows_)
    if (!f.closed()) open.push_back(&f);
  std::sort(open.begin(), open.end(), [](const Flow* x, const Flow* y) {
    return x->conn.info().conn_id < y->conn.info().conn_id;
  });
  for (Flow* f : open) CloseFlow(*f, ts_ns);
  flows_.clear();
}

size_t TcpFlows::FinishTagged(uint64_t tag, uint64_t ts_ns) {
  std::vector<std::pair<uint64_t, Key>> open;  // by connection id, as FinishAll
  for (auto& [key, f] : flows_)
    if (f.tag == tag && !f.closed()) open.emplace_back(f.conn.info().conn_id, key);
  std::sort(open.begin(), open.end(),
            [](const auto& x, const auto& y) { return x.first < y.first; });
  for (const auto& [id, key] : open) {
    auto it = flows_.find(key);
    CloseFlow(it->second, ts_ns);
    flows_.erase(it);
  }
  return open.size();
}

}  // namespace infertap::pcap
