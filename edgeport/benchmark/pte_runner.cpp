// edgeport's .pte runner for arm64 devices: a small C ABI over ExecuTorch's C++ runtime (Module API), loaded by
// device_runner.py with ctypes. In-process on purpose: under qemu-user a guest cannot exec another aarch64
// binary without binfmt_misc, and the instruction-counting TCG plugin only sees the process it was started with.
//
// Built by edgeport/benchmark/executorch_arm.py against the aarch64 executorch wheel's shared runtime
// (libexecutorch, the optimized + quantized kernels, the XNNPACK backend and its threadpool, linked
// --no-as-needed so their static registrations run). Errors: a return code != 0 and one line in `err`.
#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace executorch::extension::threadpool {
// The wheel ships libexecutorch_threadpool.so but not its header; these two are the calls we need.
class ThreadPool {
 public:
  bool _unsafe_reset_threadpool(uint32_t num_threads);
  size_t get_thread_count();
};
ThreadPool* get_threadpool();
}  // namespace executorch::extension::threadpool

namespace {
using executorch::aten::ScalarType;
using executorch::extension::from_blob;
using executorch::extension::Module;
using executorch::runtime::Error;

const int64_t kInsnMark = 0x6564676570;  // "edgep": device_runner.py's INSN_MARK

// An int8 input or output (executorch-int8's default I/O): its scale and zero point, from the program's constant
// methods forward_input0_scale / _zp (ExecuTorch's QuantizeInputs names). The C ABI stays float in, float out:
// the runner quantizes the input once before timing and dequantizes the output it copies back.
struct Quant {
  bool on = false;
  float scale = 1.0f;
  int64_t zero = 0;
};

struct Runner {
  std::unique_ptr<Module> module;
  std::vector<int32_t> in_sizes, out_sizes;
  std::vector<uint8_t> in_dim_order;  // memory order of the input's dims (0, 2, 3, 1: channels-last)
  std::vector<int32_t> in_strides;    // from in_dim_order: the tensor the runner makes says what the memory holds
  size_t in_numel = 1, out_numel = 1;
  Quant in_q, out_q;
  std::vector<int8_t> in_int8;  // the quantized input, when in_q.on
};

executorch::extension::TensorPtr input_tensor(Runner* r, const float* input) {
  if (!r->in_q.on) return from_blob(const_cast<float*>(input), r->in_sizes, r->in_strides, ScalarType::Float);
  r->in_int8.resize(r->in_numel);
  for (size_t i = 0; i < r->in_numel; ++i) {  // round half to even (FE_TONEAREST), as XNNPACK and numpy's rint
    float q = std::nearbyint(input[i] / r->in_q.scale) + static_cast<float>(r->in_q.zero);
    r->in_int8[i] = static_cast<int8_t>(std::min(127.0f, std::max(-128.0f, q)));
  }
  return from_blob(r->in_int8.data(), r->in_sizes, r->in_strides, ScalarType::Char);
}

// Reads forward_<side>0_scale / _zp; false (and a message) when the program lacks them.
bool read_quant(Module& m, const std::string& side, Quant* q, std::string* why) {
  auto scale = m.execute("forward_" + side + "0_scale");
  auto zero = m.execute("forward_" + side + "0_zp");
  if (!scale.ok() || !zero.ok() || scale->empty() || zero->empty() || !scale->at(0).isDouble() || !zero->at(0).isInt()) {
    *why = "the " + side + " is int8 but the program has no forward_" + side + "0_scale/_zp constant methods";
    return false;
  }
  q->on = true;
  q->scale = static_cast<float>(scale->at(0).toDouble());
  q->zero = zero->at(0).toInt();
  return true;
}

void say(char* err, size_t len, const std::string& text) {
  if (err && len) std::snprintf(err, len, "%s", text.c_str());
}

const char* error_name(Error e) {
  switch (e) {
    case Error::Ok: return "Ok";
    case Error::Internal: return "Internal";
    case Error::InvalidState: return "InvalidState";
    case Error::EndOfMethod: return "EndOfMethod";
    case Error::NotSupported: return "NotSupported";
    case Error::NotImplemented: return "NotImplemented";
    case Error::InvalidArgument: return "InvalidArgument";
    case Error::InvalidType: return "InvalidType";
    case Error::OperatorMissing: return "OperatorMissing";
    case Error::NotFound: return "NotFound";
    case Error::MemoryAllocationFailed: return "MemoryAllocationFailed";
    case Error::AccessFailed: return "AccessFailed";
    case Error::InvalidProgram: return "InvalidProgram";
    case Error::DelegateInvalidCompatibility: return "DelegateInvalidCompatibility";
    case Error::DelegateMemoryAllocationFailed: return "DelegateMemoryAllocationFailed";
    case Error::DelegateInvalidHandle: return "DelegateInvalidHandle";
    default: return "error";
  }
}

std::string code(Error e) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s (0x%x)", error_name(e), static_cast<unsigned>(e));
  return buf;
}

void mark() { lseek(-1, kInsnMark, SEEK_SET); }  // fails with EBADF; the TCG plugin cuts its count here

double now_ms() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

}  // namespace

extern "C" {

int edgeport_pte_set_threads(uint32_t threads) {
  auto* pool = executorch::extension::threadpool::get_threadpool();
  if (pool == nullptr) return 1;
  return pool->_unsafe_reset_threadpool(threads) ? 0 : 1;
}

// Load the program and its forward method (XNNPACK compiles its partitions now). Returns a handle or null.
void* edgeport_pte_open(const char* path, char* err, size_t err_len) {
  auto r = std::make_unique<Runner>();
  r->module = std::make_unique<Module>(path, Module::LoadMode::File);
  Error e = r->module->load();
  if (e != Error::Ok) {
    say(err, err_len, "cannot load the program: " + code(e));
    return nullptr;
  }
  e = r->module->load_forward();
  if (e != Error::Ok) {
    say(err, err_len, "cannot load its forward method: " + code(e));
    return nullptr;
  }
  auto meta = r->module->method_meta("forward");
  if (!meta.ok()) {
    say(err, err_len, "no forward method metadata: " + code(meta.error()));
    return nullptr;
  }
  if (meta->num_inputs() != 1 || meta->num_outputs() < 1) {
    say(err, err_len, "forward takes " + std::to_string(meta->num_inputs()) + " inputs and returns " +
                          std::to_string(meta->num_outputs()) + " outputs; the runner feeds one tensor, reads one");
    return nullptr;
  }
  auto in = meta->input_tensor_meta(0);
  auto out = meta->output_tensor_meta(0);
  if (!in.ok() || !out.ok()) {
    say(err, err_len, "forward's input or output is not a tensor");
    return nullptr;
  }
  auto handled = [](ScalarType t) { return t == ScalarType::Float || t == ScalarType::Char; };
  if (!handled(in->scalar_type()) || !handled(out->scalar_type())) {
    say(err, err_len, "forward's input/output dtypes are " + std::to_string(static_cast<int>(in->scalar_type())) +
                          "/" + std::to_string(static_cast<int>(out->scalar_type())) +
                          " (ScalarType codes); the runner handles float32 (6) and int8 (1)");
    return nullptr;
  }
  std::string why;
  if ((in->scalar_type() == ScalarType::Char && !read_quant(*r->module, "input", &r->in_q, &why)) ||
      (out->scalar_type() == ScalarType::Char && !read_quant(*r->module, "output", &r->out_q, &why))) {
    say(err, err_len, why);
    return nullptr;
  }
  for (auto d : in->sizes()) {
    r->in_sizes.push_back(d);
    r->in_numel *= static_cast<size_t>(d);
  }
  for (auto d : in->dim_order()) r->in_dim_order.push_back(d);
  if (r->in_dim_order.size() != r->in_sizes.size()) {
    r->in_dim_order.clear();
    for (size_t i = 0; i < r->in_sizes.size(); ++i) r->in_dim_order.push_back(static_cast<uint8_t>(i));
  }
  r->in_strides.assign(r->in_sizes.size(), 1);
  int32_t stride = 1;
  for (size_t i = r->in_dim_order.size(); i-- > 0;) {  // innermost dim last in the dim order
    r->in_strides[r->in_dim_order[i]] = stride;
    stride *= r->in_sizes[r->in_dim_order[i]];
  }
  for (auto d : out->sizes()) {
    r->out_sizes.push_back(d);
    r->out_numel *= static_cast<size_t>(d);
  }
  return r.release();
}

// Shapes: writes up to `cap` dims, returns the rank.
int edgeport_pte_input_shape(void* h, int64_t* dims, int cap) {
  auto* r = static_cast<Runner*>(h);
  for (int i = 0; i < static_cast<int>(r->in_sizes.size()) && i < cap; ++i) dims[i] = r->in_sizes[i];
  return static_cast<int>(r->in_sizes.size());
}

// The input's dim order (memory order of its dims): writes up to `cap`, returns the rank.
int edgeport_pte_input_dim_order(void* h, int64_t* dims, int cap) {
  auto* r = static_cast<Runner*>(h);
  for (int i = 0; i < static_cast<int>(r->in_dim_order.size()) && i < cap; ++i) dims[i] = r->in_dim_order[i];
  return static_cast<int>(r->in_dim_order.size());
}

int edgeport_pte_output_shape(void* h, int64_t* dims, int cap) {
  auto* r = static_cast<Runner*>(h);
  for (int i = 0; i < static_cast<int>(r->out_sizes.size()) && i < cap; ++i) dims[i] = r->out_sizes[i];
  return static_cast<int>(r->out_sizes.size());
}

// One inference of one program-sized batch; the float32 output is copied to `output` (out_numel floats).
int edgeport_pte_run(void* h, const float* input, float* output, char* err, size_t err_len) {
  auto* r = static_cast<Runner*>(h);
  auto tensor = input_tensor(r, input);
  auto out = r->module->forward(tensor);
  if (!out.ok()) {
    say(err, err_len, "forward failed: " + code(out.error()));
    return 1;
  }
  if (out->empty() || !out->at(0).isTensor()) {
    say(err, err_len, "forward returned no tensor");
    return 1;
  }
  const auto& t = out->at(0).toTensor();
  if (static_cast<size_t>(t.numel()) != r->out_numel) {
    say(err, err_len, "forward returned " + std::to_string(t.numel()) + " values, the program declares " +
                          std::to_string(r->out_numel));
    return 1;
  }
  if (r->out_q.on) {
    const int8_t* q = t.const_data_ptr<int8_t>();
    for (size_t i = 0; i < r->out_numel; ++i) output[i] = static_cast<float>(q[i] - r->out_q.zero) * r->out_q.scale;
  } else {
    std::memcpy(output, t.const_data_ptr<float>(), r->out_numel * sizeof(float));
  }
  return 0;
}

// The input is set once; then `warmup` untimed and `runs` timed forward() calls, each timed call bracketed by
// the marker syscalls when `markers` (nothing else of the loop is counted). Timings (ms) go to `timings_ms`.
int edgeport_pte_time(void* h, const float* input, int warmup, int runs, int markers, double* timings_ms, char* err,
                      size_t err_len) {
  auto* r = static_cast<Runner*>(h);
  auto tensor = input_tensor(r, input);
  Error e = r->module->set_input("forward", tensor, 0);
  if (e != Error::Ok) {
    say(err, err_len, "set_input failed: " + code(e));
    return 1;
  }
  for (int i = 0; i < warmup; ++i) {
    auto out = r->module->forward();
    if (!out.ok()) {
      say(err, err_len, "forward failed: " + code(out.error()));
      return 1;
    }
  }
  for (int i = 0; i < runs; ++i) {
    double t0 = now_ms();
    if (markers) mark();
    auto out = r->module->forward();
    if (markers) mark();
    timings_ms[i] = now_ms() - t0;
    if (!out.ok()) {
      say(err, err_len, "forward failed: " + code(out.error()));
      return 1;
    }
  }
  return 0;
}

void edgeport_pte_close(void* h) { delete static_cast<Runner*>(h); }

}  // extern "C"
