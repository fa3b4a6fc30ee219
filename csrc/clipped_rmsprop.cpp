// Fused clipped RMSProp for CPU tensors: every parameter of a group in one parallel pass.
//
// torch.optim.RMSprop(foreach=True) + a per-tensor clamp_ walks memory six times per step (mul_,
// addcmul_, sqrt, add_, addcdiv_, clamp_: about 60 bytes per fp32 parameter); this kernel reads
// p, g, v (plus grad_avg / momentum_buffer when those options are on) and writes p, v once:
// 20 bytes per fp32 parameter. The per-element math is in clipped_rmsprop.h (shared with a CUDA
// variant, if one is added).
//
// "One launch whatever the count": the op takes the tensor lists, cuts every tensor into chunks
// of kChunk elements, and runs one at::parallel_for over the chunk table, so 11 DCGAN tensors or
// 200 small ones cost one parallel region, not one per tensor.
//
// Vectorisation without -march flags (setup.py does no hardware sniffing): GCC/Clang vector-
// extension packs, with the width picked at run time from what the CPU reports, as ATen does for
// its own kernels: 64-byte packs on AVX-512, 32 on AVX2, 16 (SSE2 / NEON) anywhere else. Each
// width is the same template compiled under __attribute__((target(...))), so one build runs on any
// x86-64. sqrt goes through the ISA's packed sqrt (IEEE, correctly rounded like std::sqrt), since
// GCC will not vectorise std::sqrt under the default -fmath-errno. fp-contract is off in the
// kernels: every line of clipped_rmsprop.h is one rounding, on every path.
// Why the width matters: with 16-byte packs one core spent ~2.6 ms on the DCGAN-64 critic's
// 2.77M elements (sqrt + divide bound, not memory bound); with 64-byte packs ~0.8 ms.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <atomic>
#include <string>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define FASTWGAN_X86 1
#elif defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>
#endif

#include "clipped_rmsprop.h"

// Pack types of 16/32/64 bytes are only ever touched inside always-inline code that ends up in a
// function compiled for an ISA that has them; GCC's note about their ABI does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace {

namespace crms = fastwgan::clipped_rmsprop;

#define FASTWGAN_ALWAYS_INLINE inline __attribute__((always_inline))

template <int BYTES>
struct VecTypes {
  typedef float f32 __attribute__((vector_size(BYTES)));
  typedef double f64 __attribute__((vector_size(BYTES)));
  typedef int32_t i32 __attribute__((vector_size(BYTES)));
  typedef int64_t i64 __attribute__((vector_size(BYTES)));
};

template <int BYTES, typename S> struct PackOf;
template <int BYTES> struct PackOf<BYTES, float> {
  using type = typename VecTypes<BYTES>::f32;
  using mask = typename VecTypes<BYTES>::i32;
};
template <int BYTES> struct PackOf<BYTES, double> {
  using type = typename VecTypes<BYTES>::f64;
  using mask = typename VecTypes<BYTES>::i64;
};

// What the header needs besides + - * /, for packs of BYTES bytes: a lane-wise select (for the
// NaN-keeping clamp) and sqrt. GCC cannot vectorise std::sqrt under the default -fmath-errno,
// so sqrt is the ISA's packed (IEEE, correctly rounded) square root.
template <int BYTES>
struct PackOpsBase {
  template <typename P>
  static FASTWGAN_ALWAYS_INLINE P select_lt(P a, P b, P x, P y) {  // a < b ? x : y per lane
    using M = decltype(a < b);
    const M m = a < b;
    return (P)(((M)x & m) | ((M)y & ~m));
  }
};

struct OpsBase16 : PackOpsBase<16> {  // SSE2 on every x86-64, NEON on aarch64, else scalar
  static constexpr int kBytes = 16;
  using F = VecTypes<16>::f32;
  using D = VecTypes<16>::f64;
  static inline F sqrt(F x) {
#if defined(FASTWGAN_X86)
    return (F)_mm_sqrt_ps((__m128)x);
#elif defined(__aarch64__) && defined(__ARM_NEON)
    return (F)vsqrtq_f32((float32x4_t)x);
#else
    for (int i = 0; i < 4; ++i) x[i] = std::sqrt(x[i]);
    return x;
#endif
  }
  static inline D sqrt(D x) {
#if defined(FASTWGAN_X86)
    return (D)_mm_sqrt_pd((__m128d)x);
#elif defined(__aarch64__) && defined(__ARM_NEON)
    return (D)vsqrtq_f64((float64x2_t)x);
#else
    for (int i = 0; i < 2; ++i) x[i] = std::sqrt(x[i]);
    return x;
#endif
  }
};

#if defined(FASTWGAN_X86)
struct OpsAvx2 : PackOpsBase<32> {
  static constexpr int kBytes = 32;
  using F = VecTypes<32>::f32;
  using D = VecTypes<32>::f64;
  __attribute__((target("avx2"))) static inline F sqrt(F x) {
    return (F)_mm256_sqrt_ps((__m256)x);
  }
  __attribute__((target("avx2"))) static inline D sqrt(D x) {
    return (D)_mm256_sqrt_pd((__m256d)x);
  }
};

struct OpsAvx512 : PackOpsBase<64> {
  static constexpr int kBytes = 64;
  using F = VecTypes<64>::f32;
  using D = VecTypes<64>::f64;
  __attribute__((target("avx512f"))) static inline F sqrt(F x) {
    return (F)_mm512_sqrt_ps((__m512)x);
  }
  __attribute__((target("avx512f"))) static inline D sqrt(D x) {
    return (D)_mm512_sqrt_pd((__m512d)x);
  }
};
#endif

struct ScalarOps {
  template <typename S>
  static FASTWGAN_ALWAYS_INLINE S sqrt(S x) { return std::sqrt(x); }
  template <typename S>
  static FASTWGAN_ALWAYS_INLINE S select_lt(S a, S b, S x, S y) { return a < b ? x : y; }
};

template <typename P, typename S>
FASTWGAN_ALWAYS_INLINE P load(const S* ptr) {
  P x;
  std::memcpy(&x, ptr, sizeof(x));
  return x;
}

template <typename P, typename S>
FASTWGAN_ALWAYS_INLINE void store(S* ptr, P x) {
  std::memcpy(ptr, &x, sizeof(x));
}

template <typename P, typename S>
FASTWGAN_ALWAYS_INLINE crms::Hyper<P> splat(const crms::Hyper<S>& h) {
  auto b = [](S s) { return P{} + s; };
  return {b(h.lr_neg), b(h.alpha),        b(h.one_minus_alpha), b(h.eps),      b(h.weight_decay),
          b(h.momentum), b(h.lerp_w_compl), b(h.clip),          b(h.clip_neg), h.lerp_small};
}

template <typename S>
struct Streams {
  S* p;
  const S* g;
  S* v;
  S* ga;   // nullptr unless centered
  S* buf;  // nullptr unless momentum
};

// Elements [b, e) of one tensor: packs of Ops::kBytes, then the same math on scalars for the tail.
template <typename S, bool C, bool M, bool WD, typename Ops>
FASTWGAN_ALWAYS_INLINE void range_body(const Streams<S>& s, int64_t b, int64_t e,
                                       const crms::Hyper<S>& hs) {
  using P = typename PackOf<Ops::kBytes, S>::type;
  constexpr int W = static_cast<int>(sizeof(P) / sizeof(S));
  const crms::Hyper<P> hv = splat<P>(hs);
  int64_t i = b;
  P ga_dummy{}, buf_dummy{};
  for (; i + W <= e; i += W) {
    P p = load<P>(s.p + i), g = load<P>(s.g + i), v = load<P>(s.v + i);
    P ga = C ? load<P>(s.ga + i) : ga_dummy;
    P buf = M ? load<P>(s.buf + i) : buf_dummy;
    crms::update<C, M, WD, Ops>(p, g, v, ga, buf, hv);
    store(s.p + i, p);
    store(s.v + i, v);
    if (C) store(s.ga + i, ga);
    if (M) store(s.buf + i, buf);
  }
  for (; i < e; ++i) {
    S ga_s = 0, buf_s = 0;
    S& ga = C ? s.ga[i] : ga_s;
    S& buf = M ? s.buf[i] : buf_s;
    crms::update<C, M, WD, ScalarOps>(s.p[i], s.g[i], s.v[i], ga, buf, hs);
  }
}

// One entry point per ISA. fp-contract=off: no fused multiply-add, so every line of the header is
// one rounding, on every ISA, in the packs and in the scalar tail alike.
template <typename S, bool C, bool M, bool WD>
__attribute__((optimize("fp-contract=off"))) void range_base(const Streams<S>& s, int64_t b,
                                                             int64_t e, const crms::Hyper<S>& h) {
  range_body<S, C, M, WD, OpsBase16>(s, b, e, h);
}

#if defined(FASTWGAN_X86)
template <typename S, bool C, bool M, bool WD>
__attribute__((target("avx2"), optimize("fp-contract=off"))) void range_avx2(
    const Streams<S>& s, int64_t b, int64_t e, const crms::Hyper<S>& h) {
  range_body<S, C, M, WD, OpsAvx2>(s, b, e, h);
}

template <typename S, bool C, bool M, bool WD>
__attribute__((target("avx512f"), optimize("fp-contract=off"))) void range_avx512(
    const Streams<S>& s, int64_t b, int64_t e, const crms::Hyper<S>& h) {
  range_body<S, C, M, WD, OpsAvx512>(s, b, e, h);
}
#endif

// The ISA is picked at run time from what the CPU reports (as ATen's own CPU kernels do), so one
// build runs everywhere: no -march flag, nothing sniffed when building.
enum Isa : int { kBase = 0, kAvx2 = 1, kAvx512 = 2 };
const char* const kIsaNames[] = {"base", "avx2", "avx512"};

int detect_isa() {
#if defined(FASTWGAN_X86)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return kAvx512;
  if (__builtin_cpu_supports("avx2")) return kAvx2;
#endif
  return kBase;
}

const int kDetectedIsa = detect_isa();
std::atomic<int> g_isa{kDetectedIsa};  // tests lower it to cover every path on one machine

template <typename S>
using RangeFn = void (*)(const Streams<S>&, int64_t, int64_t, const crms::Hyper<S>&);

template <typename S, bool C, bool M, bool WD>
RangeFn<S> pick_isa() {
#if defined(FASTWGAN_X86)
  switch (g_isa.load(std::memory_order_relaxed)) {
    case kAvx512: return &range_avx512<S, C, M, WD>;
    case kAvx2: return &range_avx2<S, C, M, WD>;
    default: break;
  }
#endif
  return &range_base<S, C, M, WD>;
}

template <typename S>
RangeFn<S> pick(bool c, bool m, bool wd) {
  const int k = (c ? 4 : 0) | (m ? 2 : 0) | (wd ? 1 : 0);
  switch (k) {
    case 0: return pick_isa<S, false, false, false>();
    case 1: return pick_isa<S, false, false, true>();
    case 2: return pick_isa<S, false, true, false>();
    case 3: return pick_isa<S, false, true, true>();
    case 4: return pick_isa<S, true, false, false>();
    case 5: return pick_isa<S, true, false, true>();
    case 6: return pick_isa<S, true, true, false>();
    default: return pick_isa<S, true, true, true>();
  }
}

// 16384 elements = 64 KiB per fp32 stream: big enough that the per-chunk bookkeeping is noise,
// small enough that a DCGAN-64 critic (2.77M elements) still splits into ~170 chunks for 2 threads.
constexpr int64_t kChunk = 16384;
// Below this many elements one thread is faster than waking the pool (~5 us on the 2-core EPYC).
constexpr int64_t kSerialBelow = 32768;

struct Chunk {
  int32_t tensor;
  int64_t begin, end;
};

template <typename S>
void run(at::TensorList params, at::TensorList grads, at::TensorList square_avgs,
         at::TensorList grad_avgs, at::TensorList momentum_buffers, double lr, double alpha,
         double eps, double weight_decay, double momentum, bool centered, double clip) {
  const int64_t n = static_cast<int64_t>(params.size());
  const bool use_m = momentum > 0;
  std::vector<Streams<S>> streams(n);
  std::vector<Chunk> chunks;
  int64_t total = 0;
  for (int64_t t = 0; t < n; ++t) {
    streams[t] = {params[t].data_ptr<S>(), grads[t].data_ptr<S>(), square_avgs[t].data_ptr<S>(),
                  centered ? grad_avgs[t].data_ptr<S>() : nullptr,
                  use_m ? momentum_buffers[t].data_ptr<S>() : nullptr};
    const int64_t numel = params[t].numel();
    total += numel;
    for (int64_t b = 0; b < numel; b += kChunk)
      chunks.push_back({static_cast<int32_t>(t), b, std::min(numel, b + kChunk)});
  }
  const S w = static_cast<S>(1.0 - alpha);  // torch: value=1-alpha computed in double, then cast
  crms::Hyper<S> hs{static_cast<S>(-lr),
                    static_cast<S>(alpha),
                    w,
                    static_cast<S>(eps),
                    static_cast<S>(weight_decay),
                    static_cast<S>(momentum),
                    static_cast<S>(1.0 - (1.0 - alpha)),
                    static_cast<S>(clip),
                    static_cast<S>(-clip),
                    std::abs(1.0 - alpha) < 0.5};
  const RangeFn<S> fn = pick<S>(centered, use_m, weight_decay != 0);
  const int64_t nchunks = static_cast<int64_t>(chunks.size());
  const int64_t grain = total < kSerialBelow ? std::max<int64_t>(nchunks, 1) : 1;
  at::parallel_for(0, nchunks, grain, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) {
      const Chunk& c = chunks[k];
      fn(streams[c.tensor], c.begin, c.end, hs);
    }
  });
}

void check_same(const at::Tensor& p, const at::Tensor& x, const char* what, int64_t i) {
  TORCH_CHECK(x.device() == p.device() && x.scalar_type() == p.scalar_type(),
              "clipped_rmsprop_: ", what, "[", i, "] must be on ", p.device(), " with dtype ",
              p.scalar_type(), ", got ", x.device(), " / ", x.scalar_type());
  TORCH_CHECK(x.sizes() == p.sizes() && x.strides() == p.strides(),
              "clipped_rmsprop_: ", what, "[", i, "] must have the shape and strides of params[",
              i, "] (got ", x.sizes(), " / ", x.strides(), " vs ", p.sizes(), " / ", p.strides(),
              "): pass dense tensors laid out like their parameter");
}

void clipped_rmsprop_(at::TensorList params, at::TensorList grads, at::TensorList square_avgs,
                      at::TensorList grad_avgs, at::TensorList momentum_buffers,
                      at::TensorList steps, double lr, double alpha, double eps,
                      double weight_decay, double momentum, bool centered, double clip) {
  const size_t n = params.size();
  TORCH_CHECK(grads.size() == n && square_avgs.size() == n && steps.size() == n,
              "clipped_rmsprop_: params, grads, square_avgs and steps must have one entry per "
              "parameter");
  TORCH_CHECK(!centered || grad_avgs.size() == n,
              "clipped_rmsprop_: centered=True needs one grad_avg per parameter");
  TORCH_CHECK(!(momentum > 0) || momentum_buffers.size() == n,
              "clipped_rmsprop_: momentum > 0 needs one momentum_buffer per parameter");
  TORCH_CHECK(clip > 0, "clipped_rmsprop_: clip must be > 0, got ", clip);
  TORCH_CHECK(lr >= 0, "clipped_rmsprop_: lr must be >= 0, got ", lr);
  if (n == 0) return;
  const auto dtype = params[0].scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble,
              "clipped_rmsprop_: the C++ kernel runs float32 and float64 parameters, got ", dtype);
  for (size_t i = 0; i < n; ++i) {
    const at::Tensor& p = params[i];
    TORCH_CHECK(p.device().is_cpu(), "clipped_rmsprop_: the C++ kernel takes CPU tensors, got ",
                p.device());
    TORCH_CHECK(p.scalar_type() == dtype, "clipped_rmsprop_: one dtype per call; params[", i,
                "] is ", p.scalar_type(), ", params[0] is ", dtype);
    TORCH_CHECK(p.is_non_overlapping_and_dense(),
                "clipped_rmsprop_: params[", i, "] must be dense (no gaps or overlaps)");
    TORCH_CHECK(grads[i].layout() == at::kStrided,
                "clipped_rmsprop_: sparse gradients are not supported (grads[", i, "])");
    check_same(p, grads[i], "grads", i);
    check_same(p, square_avgs[i], "square_avgs", i);
    if (centered) check_same(p, grad_avgs[i], "grad_avgs", i);
    if (momentum > 0) check_same(p, momentum_buffers[i], "momentum_buffers", i);
  }
  if (dtype == at::kFloat) {
    run<float>(params, grads, square_avgs, grad_avgs, momentum_buffers, lr, alpha, eps,
               weight_decay, momentum, centered, clip);
  } else {
    run<double>(params, grads, square_avgs, grad_avgs, momentum_buffers, lr, alpha, eps,
                weight_decay, momentum, centered, clip);
  }
  // state["step"] += 1, as torch does, without one dispatcher call per tensor when it is a CPU
  // scalar (the usual case: capturable=False keeps steps on the CPU).
  for (const at::Tensor& s : steps) {
    if (s.device().is_cpu() && s.numel() == 1 && s.scalar_type() == at::kFloat) {
      *s.data_ptr<float>() += 1.0f;
    } else if (s.device().is_cpu() && s.numel() == 1 && s.scalar_type() == at::kDouble) {
      *s.data_ptr<double>() += 1.0;
    } else {
      const_cast<at::Tensor&>(s).add_(1);
    }
  }
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(fastwgan, m) {
  m.def(
      "clipped_rmsprop_(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] square_avgs, "
      "Tensor(c!)[] grad_avgs, Tensor(d!)[] momentum_buffers, Tensor(e!)[] steps, float lr, "
      "float alpha, float eps, float weight_decay, float momentum, bool centered, float clip) "
      "-> ()");
}

TORCH_LIBRARY_IMPL(fastwgan, CPU, m) {
  m.impl("clipped_rmsprop_", &clipped_rmsprop_);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "fastwgan fused clipped RMSProp (CPU); the op is torch.ops.fastwgan.clipped_rmsprop_";
  m.def("isa", []() { return std::string(kIsaNames[g_isa.load()]); },
        "the SIMD path the kernel runs: base (16-byte packs), avx2 or avx512");
  m.def("detected_isa", []() { return std::string(kIsaNames[kDetectedIsa]); },
        "the best SIMD path this CPU supports");
  m.def(
      "set_isa",
      [](const std::string& name) {
        for (int k = 0; k <= kDetectedIsa; ++k) {
          if (name == kIsaNames[k]) {
            g_isa.store(k);
            return;
          }
        }
        TORCH_CHECK(false, "set_isa: '", name, "' is not one of the paths this CPU runs (up to ",
                    kIsaNames[kDetectedIsa], ")");
      },
      "choose a SIMD path at or below the detected one (for tests and benchmarks)");
  m.attr("chunk") = kChunk;
}
