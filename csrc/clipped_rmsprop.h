// Per-element math of the fused clipped RMSProp step (WGAN critic update, Arjovsky et al. 2017,
// "Wasserstein GAN", Algorithm 1: RMSProp, then clip every weight to [-c, c]).
//
// One element, in the order torch.optim.RMSprop (torch 2.13, _single_tensor_rmsprop and
// _multi_tensor_rmsprop) rounds it, so that the fused kernel stays within a few ulp of torch:
//
//   g   = g + wd * p                          grad.add(param, alpha=wd)        (if wd != 0)
//   v   = v * alpha                           square_avg.mul_(alpha)
//   v   = v + ((1 - alpha) * g) * g           .addcmul_(g, g, value=1-alpha)
//   ga  = lerp(ga, g, 1 - alpha)              grad_avg.lerp_(g, 1-alpha)       (if centered)
//   d   = sqrt(v + (-ga) * ga) + eps          addcmul(ga, ga, value=-1).sqrt_().add_(eps)
//       | sqrt(v) + eps                       (not centered)
//   buf = buf * mom + g / d                   buf.mul_(mom).addcdiv_(g, d)     (if momentum)
//   p   = p + (-lr) * buf                     param.add_(buf, alpha=-lr)
//       | p + ((-lr) * g) / d                 param.addcdiv_(g, d, value=-lr)  (no momentum)
//   p   = min(max(p, -c), c)                  param.clamp_(-c, c), NaN kept as in torch
//
// Each line is one IEEE rounding, as in torch. Where torch's own vectorised CPU kernels fuse a
// multiply-add (lerp and add-with-alpha use fmadd on AVX2/AVX512), or nvcc/Triton contract one,
// the results differ by an ulp or two; the tests derive their tolerance from that. One place
// where that is more than rounding: with centered=True and |grad_avg| > 1.8e19, (-ga) * ga
// overflows to -inf and inf + -inf is NaN here, while torch's AVX-512 addcmul (a fused
// multiply-add, whose product never rounds to inf) returns inf. Gradients that large already
// froze the weights (square_avg = inf) in both.
//
// The header is shared by the CPU kernel (csrc/clipped_rmsprop.cpp, where T is a SIMD pack of
// GCC/Clang vector-extension type, 16/32/64 bytes, or a plain scalar for the tails) and by a CUDA
// variant, if one is added (T = float): the math lives only here. The Triton kernel in
// src/fastwgan/ops/clipped_rmsprop.py spells the same lines in Triton. ``Ops`` supplies what plain operators cannot: sqrt and the NaN-keeping
// select for the clamp, per T.
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define FASTWGAN_HD __host__ __device__ __forceinline__
#else
#define FASTWGAN_HD inline __attribute__((always_inline))
#endif

namespace fastwgan {
namespace clipped_rmsprop {

// Hyper-parameters, already converted to the element type (torch converts a Python float scalar
// to the tensor's dtype once, before the elementwise loop; so do we).
template <typename S>
struct Hyper {
  S lr_neg;           // -lr
  S alpha;
  S one_minus_alpha;  // 1 - alpha: addcmul's value and lerp's weight
  S eps;
  S weight_decay;
  S momentum;
  S lerp_w_compl;     // 1 - (1 - alpha), for lerp's large-weight branch
  S clip;             // c > 0
  S clip_neg;         // -c
  bool lerp_small;    // |1 - alpha| < 0.5: which lerp formula torch uses
};

// One element (or one pack of them). T is the arithmetic type; h holds the hyper-parameters
// broadcast to T.
template <bool CENTERED, bool MOMENTUM, bool WEIGHT_DECAY, typename Ops, typename T>
FASTWGAN_HD void update(T& p, T g, T& v, T& ga, T& buf, const Hyper<T>& h) {
  if (WEIGHT_DECAY) g = g + h.weight_decay * p;
  v = v * h.alpha;
  v = v + (h.one_minus_alpha * g) * g;
  T d;
  if (CENTERED) {
    // at::native lerp: weight < 0.5 ? self + w * (end - self) : end - (end - self) * (1 - w)
    ga = h.lerp_small ? ga + h.one_minus_alpha * (g - ga) : g - (g - ga) * h.lerp_w_compl;
    d = Ops::sqrt(v + (-ga) * ga);
  } else {
    d = Ops::sqrt(v);
  }
  d = d + h.eps;
  if (MOMENTUM) {
    buf = buf * h.momentum;
    buf = buf + g / d;
    p = p + h.lr_neg * buf;
  } else {
    p = p + (h.lr_neg * g) / d;
  }
  // clamp: a comparison with NaN is false, so NaN passes through both selects (torch keeps NaN).
  p = Ops::select_lt(p, h.clip_neg, h.clip_neg, p);  // p < -c ? -c : p
  p = Ops::select_lt(h.clip, p, h.clip, p);          // c < p ?  c : p
}

}  // namespace clipped_rmsprop
}  // namespace fastwgan
