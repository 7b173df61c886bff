// The env table of __wrap_mdb_txn_begin: which T0 gate a write txn the
// program begins itself passes first (io_intercept.h, RegisterEnv). Part
// of the wrapper (cowbackup_lmdb), not of the write interception the
// preload library shares: the gate is Env's.
#include <lmdb.h>

#include <atomic>
#include <mutex>

#include "lmdb/env_impl.h"
#include "lmdb/io_intercept.h"

namespace cowbackup::lmdb {
namespace {

constexpr int kEnvSlots = 128;
std::mutex g_env_mu;  // claims and releases; lookups are lock-free

// The same scheme as io_intercept.cc's descriptor table: claimed under
// g_env_mu, never compacted; gate before env on register, env before gate
// on unregister.
struct EnvSlot {
  std::atomic<const MDB_env*> env{nullptr};
  std::atomic<T0Gate*> gate{nullptr};
};
EnvSlot g_envs[kEnvSlots];
std::atomic<int> g_envs_used{0};
thread_local bool t_gate_passed = false;

T0Gate* LookupGate(const MDB_env* env) {
  const int n = g_envs_used.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i) {
    if (g_envs[i].env.load(std::memory_order_acquire) == env) return g_envs[i].gate.load(std::memory_order_acquire);
  }
  return nullptr;
}

}  // namespace

Status RegisterEnv(const MDB_env* env, T0Gate* gate) {
  std::lock_guard<std::mutex> lock(g_env_mu);
  const int n = g_envs_used.load(std::memory_order_relaxed);
  for (int i = 0; i < n; ++i) {
    if (g_envs[i].env.load(std::memory_order_relaxed) == env) {
      return Status::Busy("lmdb: the environment is already attached");
    }
  }
  for (int i = 0; i < kEnvSlots; ++i) {
    if (g_envs[i].env.load(std::memory_order_relaxed) != nullptr) continue;
    g_envs[i].gate.store(gate, std::memory_order_release);
    g_envs[i].env.store(env, std::memory_order_release);
    if (i >= n) g_envs_used.store(i + 1, std::memory_order_release);
    return Status::OK();
  }
  return Status::Busy("lmdb: too many open environments (gate table full)");
}

T0Gate* LookupEnvGate(const MDB_env* env) { return LookupGate(env); }

void UnregisterEnv(const T0Gate* gate) {
  std::lock_guard<std::mutex> lock(g_env_mu);
  const int n = g_envs_used.load(std::memory_order_relaxed);
  for (int i = 0; i < n; ++i) {
    if (g_envs[i].gate.load(std::memory_order_relaxed) == gate) {
      g_envs[i].env.store(nullptr, std::memory_order_release);
      g_envs[i].gate.store(nullptr, std::memory_order_release);
    }
  }
}

GateBypass::GateBypass() : saved_(t_gate_passed) { t_gate_passed = true; }
GateBypass::~GateBypass() { t_gate_passed = saved_; }

// Write txns the program begins itself pass the env's T0 gate first
// (io_intercept.h, RegisterEnv).
void BeforeTxnBegin(MDB_env* env, MDB_txn* parent, unsigned int flags) {
  if (parent == nullptr && (flags & MDB_RDONLY) == 0 && !t_gate_passed) {
    if (T0Gate* gate = LookupGate(env)) gate->before_write_txn();
  }
}

}  // namespace cowbackup::lmdb
