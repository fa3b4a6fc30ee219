// Fused elementwise pieces of the WGAN-GP gradient penalty (Gulrajani et al. 2017, Alg. 1), CPU.
//
//   interpolate:  x_hat[b, i] = alpha[b] * real[b, i] + (1 - alpha[b]) * fake[b, i]
//                 one pass: read real, fake, write x_hat = 12 B/elem (fp32); the unfused
//                 a*r + (1-a)*f with a broadcast writes and re-reads two temporaries (28 B/elem).
//   forward:      n[b] = ||g[b, :]||_2,  gap[b] = n[b] - 1 (one-sided: max(gap, 0)),
//                 P = lam / B * sum_b gap[b]^2
//                 one pass over g (4 B/elem), the rest is O(B).
//   backward:     dP/dg[b, i] = gout * (2 lam / B) * gap[b] / n[b] * g[b, i],  and 0 where n[b] == 0
//                 one pass: read g, write dg (8 B/elem; the unfused autograd chain of
//                 pow/sub/norm backward moves about 24).
//
// Zero-gradient convention (documented in fastwgan.penalty): at g[b] = 0 the norm is not
// differentiable; we take the subgradient d||g||/dg = 0 there, so such a sample contributes
// lam / B * (0 - 1)^2 to P (two-sided) and exactly zero gradient, never NaN (0/0).
//
// Inputs are (B, N) contiguous tensors (the Python side flattens all non-batch axes, so the norm
// is per sample over C, H, W). Row sums accumulate in double: for N up to ~1e6 fp32 elements the
// result is then correctly rounded to within 1 ulp, better than torch's own fp32 reduction.
#include <torch/extension.h>
#include <torch/library.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <tuple>

namespace {

void check_2d(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.dim() == 2, "gradient_penalty: ", name, " must be (B, N), got ", t.sizes());
  TORCH_CHECK(t.is_contiguous(), "gradient_penalty: ", name, " must be contiguous");
  TORCH_CHECK(t.device().is_cpu(), "gradient_penalty: ", name, " must be a CPU tensor");
}

at::Tensor interpolate(const at::Tensor& real, const at::Tensor& fake, const at::Tensor& alpha) {
  check_2d(real, "real");
  check_2d(fake, "fake");
  TORCH_CHECK(real.sizes() == fake.sizes(), "gradient_penalty: real ", real.sizes(),
              " and fake ", fake.sizes(), " differ");
  TORCH_CHECK(real.scalar_type() == fake.scalar_type() && real.scalar_type() == alpha.scalar_type(),
              "gradient_penalty: real, fake and alpha must share a dtype");
  TORCH_CHECK(alpha.dim() == 1 && alpha.size(0) == real.size(0) && alpha.is_contiguous(),
              "gradient_penalty: alpha must be a contiguous (B,) tensor");
  auto out = at::empty_like(real);
  const int64_t B = real.size(0), N = real.size(1);
  AT_DISPATCH_FLOATING_TYPES(real.scalar_type(), "gradient_penalty_interpolate", [&] {
    const scalar_t* r = real.data_ptr<scalar_t>();
    const scalar_t* f = fake.data_ptr<scalar_t>();
    const scalar_t* a = alpha.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    // Parallel over the flat index (rows can be tiny, e.g. N = 2 for the toy data).
    at::parallel_for(0, B * N, 32768, [&](int64_t begin, int64_t end) {
      int64_t i = begin;
      while (i < end) {
        const int64_t b = i / N;
        const int64_t stop = std::min(end, (b + 1) * N);
        const scalar_t ab = a[b];
        const scalar_t bb = scalar_t(1) - ab;
        // Same expression and order as the reference a*r + (1-a)*f; the loop vectorizes.
        for (int64_t j = i; j < stop; ++j) o[j] = ab * r[j] + bb * f[j];
        i = stop;
      }
    });
  });
  return out;
}

// Per-row L2 norms of g (B, N) and the penalty scalar, in one pass over g.
std::tuple<at::Tensor, at::Tensor> forward(const at::Tensor& g, double lam, bool one_sided) {
  check_2d(g, "grad");
  const int64_t B = g.size(0), N = g.size(1);
  TORCH_CHECK(B > 0, "gradient_penalty: empty batch");
  // The norms are returned in float64 (B values, nothing to move): the backward's coefficient
  // gap / n is then not limited by an fp32 rounding of n, which costs up to u * n / |gap| relative
  // (16u at n = 0.94) -- measured to matter in tests/test_gradient_penalty.py.
  auto norm = at::empty({B}, g.options().dtype(at::kDouble));
  auto penalty = at::empty({}, g.options());
  std::vector<double> gap2(B);
  AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "gradient_penalty_forward", [&] {
    const scalar_t* gp = g.data_ptr<scalar_t>();
    double* np = norm.data_ptr<double>();
    const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(N, 1));
    at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const scalar_t* row = gp + b * N;
        // 4 independent double accumulators: breaks the add dependency chain.
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        int64_t i = 0;
        for (; i + 4 <= N; i += 4) {
          const double x0 = row[i], x1 = row[i + 1], x2 = row[i + 2], x3 = row[i + 3];
          s0 += x0 * x0; s1 += x1 * x1; s2 += x2 * x2; s3 += x3 * x3;
        }
        for (; i < N; ++i) { const double x = row[i]; s0 += x * x; }
        const double n = std::sqrt((s0 + s1) + (s2 + s3));
        np[b] = n;
        double gap = n - 1.0;
        if (one_sided && gap < 0) gap = 0;
        gap2[b] = gap * gap;
      }
    });
    double acc = 0;
    for (int64_t b = 0; b < B; ++b) acc += gap2[b];
    penalty.fill_(static_cast<scalar_t>(lam * acc / static_cast<double>(B)));
  });
  return {penalty, norm};
}

// dP/dg for P = lam/B * sum_b gap_b^2; gout is the 0-dim upstream gradient (no host sync).
at::Tensor backward(const at::Tensor& gout, const at::Tensor& g, const at::Tensor& norm, double lam,
                    bool one_sided) {
  check_2d(g, "grad");
  TORCH_CHECK(norm.dim() == 1 && norm.size(0) == g.size(0) && norm.is_contiguous() &&
                  norm.scalar_type() == at::kDouble,
              "gradient_penalty: norm must be the contiguous float64 (B,) tensor of the forward");
  TORCH_CHECK(gout.numel() == 1, "gradient_penalty: the penalty's gradient must be a scalar");
  const int64_t B = g.size(0), N = g.size(1);
  auto dg = at::empty_like(g);
  const double go = gout.item<double>();  // a CPU tensor: reading it costs no device sync
  std::vector<double> coef(B);
  AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "gradient_penalty_backward", [&] {
    const double* np = norm.data_ptr<double>();
    for (int64_t b = 0; b < B; ++b) {
      const double n = np[b];
      double gap = n - 1.0;
      if (one_sided && gap < 0) gap = 0;
      // d||g||/dg = g / n, defined as 0 at n == 0 (see the header comment).
      coef[b] = n > 0 ? go * 2.0 * lam / static_cast<double>(B) * gap / n : 0.0;
    }
    const scalar_t* gp = g.data_ptr<scalar_t>();
    scalar_t* op = dg.data_ptr<scalar_t>();
    at::parallel_for(0, B * N, 32768, [&](int64_t begin, int64_t end) {
      int64_t i = begin;
      while (i < end) {
        const int64_t b = i / N;
        const int64_t stop = std::min(end, (b + 1) * N);
        const scalar_t c = static_cast<scalar_t>(coef[b]);
        for (int64_t j = i; j < stop; ++j) op[j] = c * gp[j];
        i = stop;
      }
    });
  });
  return dg;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(fastwgan, m) {
  m.def("gradient_penalty_interpolate(Tensor real, Tensor fake, Tensor alpha) -> Tensor");
  m.def("gradient_penalty_forward(Tensor grad, float lam, bool one_sided) -> (Tensor, Tensor)");
  m.def(
      "gradient_penalty_backward(Tensor gout, Tensor grad, Tensor norm, float lam, bool one_sided)"
      " -> Tensor");
}

TORCH_LIBRARY_IMPL(fastwgan, CPU, m) {
  m.impl("gradient_penalty_interpolate", &interpolate);
  m.impl("gradient_penalty_forward", &forward);
  m.impl("gradient_penalty_backward", &backward);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "fastwgan gradient-penalty CPU kernels (ops registered as torch.ops.fastwgan.*)";
}
