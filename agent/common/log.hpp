// Minimal leveled logging to stderr: "2026-11-28T17:40:00.123Z level message". Log lines carry
// identifiers (connection ids, pool names), never payload text (docs/faults.md privacy).
// Hand-written rather than spdlog on purpose: the agent logs a few lines per minute from a
// handful of places, printf-style format checking is all it needs, and one line per call under
// a mutex is the whole contract — a library (and libfmt behind it) would add a dependency for
// nothing the agent uses (docs/architecture.md).
#pragma once

#include <cstdarg>

namespace infertap {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3, kOff = 4 };

void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
// Parses debug|info|warn|error|off; false on anything else.
bool ParseLogLevel(const char* text, LogLevel* out);

void Log(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

#define LOG_DEBUG(...) ::infertap::Log(::infertap::LogLevel::kDebug, __VA_ARGS__)
#define LOG_INFO(...) ::infertap::Log(::infertap::LogLevel::kInfo, __VA_ARGS__)
#define LOG_WARN(...) ::infertap::Log(::infertap::LogLevel::kWarn, __VA_ARGS__)
#define LOG_ERROR(...) ::infertap::Log(::infertap::LogLevel::kError, __VA_ARGS__)

}  // namespace infertap
