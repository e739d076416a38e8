// Synthetic capture events for tracker tests: the exact byte layout the kernel emits.
#pragma once

#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "agent/capture/abi.hpp"

namespace infertap::testing {

inline std::vector<uint8_t> DataEvent(uint64_t conn_id, Direction dir, uint64_t pos,
                                      std::string_view payload, uint64_t ts_ns,
                                      uint32_t len_override = 0, uint32_t fd = 5,
                                      uint32_t tgid = 100) {
  it_data_event ev{};
  ev.hdr.type = IT_EV_DATA;
  ev.hdr.version = IT_ABI_VERSION;
  ev.hdr.tgid = tgid;
  ev.hdr.conn_id = conn_id;
  ev.hdr.ts_ns = ts_ns;
  ev.pos = pos;
  ev.cap_len = static_cast<uint32_t>(payload.size());
  ev.len = len_override ? len_override : ev.cap_len;
  ev.syscall_len = ev.len;
  ev.fd = fd;
  ev.direction = static_cast<uint8_t>(dir);
  ev.role = IT_ROLE_SERVER;
  ev.flags = ev.cap_len < ev.len ? IT_DATA_F_GAP : 0;
  std::vector<uint8_t> out(sizeof(ev) + payload.size());
  std::memcpy(out.data(), &ev, sizeof(ev));
  std::memcpy(out.data() + sizeof(ev), payload.data(), payload.size());
  return out;
}

inline std::vector<uint8_t> ConnEvent(uint16_t type, uint64_t conn_id, uint64_t ts_ns,
                                      uint64_t in_pos = 0, uint64_t out_pos = 0, uint32_t fd = 5) {
  it_conn_event ev{};
  ev.hdr.type = type;
  ev.hdr.version = IT_ABI_VERSION;
  ev.hdr.tgid = 100;
  ev.hdr.conn_id = conn_id;
  ev.hdr.ts_ns = ts_ns;
  ev.fd = fd;
  ev.role = IT_ROLE_SERVER;
  ev.family = 2;
  ev.local_addr[10] = ev.local_addr[11] = 0xff;
  ev.local_addr[12] = 10;
  ev.local_addr[15] = 1;
  ev.remote_addr[10] = ev.remote_addr[11] = 0xff;
  ev.remote_addr[12] = 10;
  ev.remote_addr[15] = 2;
  ev.local_port = 8000;
  ev.remote_port = static_cast<uint16_t>(40000 + conn_id);
  ev.bytes_ingress = in_pos;
  ev.bytes_egress = out_pos;
  std::vector<uint8_t> out(sizeof(ev));
  std::memcpy(out.data(), &ev, sizeof(ev));
  return out;
}

}  // namespace infertap::testing
