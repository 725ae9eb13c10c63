"""covpool's ten GCP layers written in PyTorch: the baseline a user would otherwise run.

Each layer maps features x [B, C, N] to the upper triangle of the covariance square root,
[B, C(C+1)/2], with the same arithmetic as covpool's defaults, so that timing one against the
other compares equal work:

  * the covariance is centred over positions, divided by N and formed in the method's spectral
    precision (float64 for the eigen methods, the input's float32 for ns and mpa-lya);
  * ns: trace normalization, T = 5 coupled Newton-Schulz steps (iSQRT-COV), backward by autograd
    through the iteration;
  * the eigen methods: eigh forward with eigenvalues floored at the precision's epsilon, backward
    dA = U (M o K) U^T in the eigenbasis (M = U^T sym(dS) U) with the method's coefficients:
    ordinary 1/(l_j - l_i) (svd), clipped (svd-trunc), top-n forward (svd-topn), degree-100 Taylor,
    [50/50] Pade, 19 power-iteration steps (svd-pi), 1/(sqrt l_i + sqrt l_j) (svd-lyap), or autograd
    through 5 Newton-Schulz steps at A (svd-newton);
  * mpa-lya: Frobenius normalization, [5/5] Pade approximant of sqrt(1 - z) forward, 8 steps of the
    Newton-Schulz sign iteration for the Lyapunov equation backward.

The formulas follow the papers (Li et al. CVPR 2018; Song et al. ICCV 2021 and ICLR 2022; Wang et
al. NeurIPS 2019) and covpool's README; the code is this project's own. Runs on any torch device.
"""
import math

import torch


# ---- pieces shared by every method -----------------------------------------------------------

def covariance(x, dtype):
    """[B, C, N] features -> [B, C, C] covariance in `dtype`, centred over N, divided by N."""
    xs = x.to(dtype)
    xs = xs - xs.mean(dim=2, keepdim=True)
    return torch.matmul(xs, xs.transpose(1, 2)) / xs.shape[2]


_triu_cache = {}


def upper_triangle(s):
    """[B, C, C] -> [B, C(C+1)/2], row by row, diagonal included (covpool's triuvec order)."""
    c = s.shape[-1]
    key = (c, s.device)
    if key not in _triu_cache:
        _triu_cache[key] = torch.triu_indices(c, c, device=s.device)
    rows, cols = _triu_cache[key]
    return s[:, rows, cols]


def sym(g):
    return 0.5 * (g + g.transpose(1, 2))


def identity_like(a):
    return torch.eye(a.shape[-1], dtype=a.dtype, device=a.device).expand_as(a)


# ---- Newton-Schulz (iSQRT-COV) ---------------------------------------------------------------

def newton_schulz(a, steps):
    """sqrt(A) by `steps` coupled Newton-Schulz steps on A / tr(A), rescaled by sqrt(tr(A)).
    Differentiable by autograd (the backward is the exact derivative of the iteration)."""
    tr = torch.diagonal(a, dim1=1, dim2=2).sum(dim=1)[:, None, None]
    eye = identity_like(a)
    y = a / tr
    z = eye
    for k in range(steps):
        p = 1.5 * eye - 0.5 * torch.matmul(z, y)
        y = torch.matmul(y, p)
        if k + 1 < steps:
            z = torch.matmul(p, z)
    return y * torch.sqrt(tr)


# ---- eigen forward, eigenbasis backward --------------------------------------------------------

def coefficients_ordinary(lam, kappa=None):
    """K[i, j] = 1 / (l_j - l_i), i != j (optionally clipped to [-kappa, kappa]); zero diagonal."""
    diff = lam[:, None, :] - lam[:, :, None]
    k = 1.0 / diff
    if kappa is not None:
        k = k.clamp(-kappa, kappa)
    k.diagonal(dim1=1, dim2=2).fill_(0.0)
    return k


def _finite_or_extreme(k):
    """The `svd` rule for non-finite K entries, per matrix: +inf/NaN -> largest finite entry,
    -inf -> smallest finite entry."""
    finite = torch.isfinite(k)
    big = torch.finfo(k.dtype).max
    hi = torch.where(finite, k, torch.full_like(k, -big)).amax(dim=(1, 2), keepdim=True)
    lo = torch.where(finite, k, torch.full_like(k, big)).amin(dim=(1, 2), keepdim=True)
    k = torch.where(torch.isnan(k) | (k == math.inf), hi.expand_as(k), k)
    return torch.where(k == -math.inf, lo.expand_as(k), k)


def coefficients_series(lam, method, degree):
    """K[i, j] ~ 1 / (l_j - l_i) through a series in r = small / large in [0, 1]:
    1/(l_j - l_i) = sign / large * 1/(1 - r); 1/(1 - r) by its Taylor polynomial of `degree`
    (svd-taylor) or the [degree/degree] Pade approximant with q_j = -1/L, p_k = 1 - k/L."""
    li = lam[:, :, None]
    lj = lam[:, None, :]
    large = torch.maximum(li, lj)
    r = torch.minimum(li, lj) / large
    if method == 'svd-taylor':
        acc = torch.ones_like(r)
        for _ in range(degree):
            acc = acc * r + 1.0
        series = acc
    else:  # svd-pade, Horner on P and Q
        L = degree
        num = torch.zeros_like(r)
        den = torch.zeros_like(r)
        for k in range(L, -1, -1):
            num = num * r + (1.0 - k / L)
            den = den * r + (1.0 if k == 0 else -1.0 / L)
        series = num / den
    sign = torch.where(lj >= li, 1.0, -1.0).to(lam.dtype)
    k = sign / large * series
    k.diagonal(dim1=1, dim2=2).fill_(0.0)
    return _finite_or_extreme(k) if method == 'svd-pade' else k


def coefficients_power_iteration(lam, steps):
    """Power iteration with deflation from the largest eigenvalue down, linearized at the
    converged vectors, with x = l_i / l_j (i < j, ascending order) and S_m(x) = sum_{k<m} x^k:
    K[i, j] = S_T(x) / l_j and K[j, i] = -S_{T-1}(x) / l_j."""
    li = lam[:, :, None]
    lj = lam[:, None, :]
    x = li / lj
    s_prev = torch.ones_like(x)  # S_1
    for _ in range(steps - 2):
        s_prev = s_prev * x + 1.0
    s_t = s_prev * x + 1.0 if steps >= 2 else torch.ones_like(x)
    if steps < 2:
        s_prev = torch.zeros_like(x)
    upper = s_t / lj                       # entries (i, j), i < j
    lower = (-s_prev / lj).transpose(1, 2)  # entry (j, i) from the pair (i, j)
    c = lam.shape[-1]
    mask = torch.ones(c, c, dtype=torch.bool, device=lam.device).triu(1)
    return torch.where(mask, upper, torch.where(mask.T, lower, torch.zeros_like(upper)))


class EigenSqrt(torch.autograd.Function):
    """S = U diag(sqrt l) U^T with the backward in the eigenbasis:
    K methods: dA = U [sym(F o (U^T dU)) + diag(M_ii / (2 sqrt l_i))] U^T with M = U^T sym(dS) U,
    U^T dU = 2 M diag(sqrt l) and F_ij the coefficient of u_i in du_j (the coefficients_* above);  svd-lyap: dA = U [M / (sqrt l_i + sqrt l_j)] U^T."""

    @staticmethod
    def forward(ctx, a, method, opts):
        lam, u = torch.linalg.eigh(a)
        eps = torch.finfo(a.dtype).eps
        lam = lam.clamp_min(eps)
        if method == 'svd-topn':
            keep = opts['n']
            lam = lam.clone()
            lam[:, : lam.shape[1] - keep] = eps
        root = torch.sqrt(lam)
        ctx.save_for_backward(u, lam, root)
        ctx.method, ctx.opts = method, opts
        return torch.matmul(u * root[:, None, :], u.transpose(1, 2))

    @staticmethod
    def backward(ctx, ds):
        u, lam, root = ctx.saved_tensors
        method, opts = ctx.method, ctx.opts
        m = torch.matmul(torch.matmul(u.transpose(1, 2), sym(ds)), u)
        if method == 'svd-lyap':
            inner = m / (root[:, :, None] + root[:, None, :])
        else:
            if method in ('svd', 'svd-topn'):
                k = _finite_or_extreme(coefficients_ordinary(lam))
            elif method == 'svd-trunc':
                k = coefficients_ordinary(lam, opts['kappa'])
            elif method == 'svd-pi':
                k = coefficients_power_iteration(lam, opts['iterations'])
            else:
                k = coefficients_series(lam, method, opts['degree'])
            x = k * m * (2.0 * root[:, None, :])  # X_ij = F_ij (U^T dU)_ij
            inner = sym(x) + torch.diag_embed(torch.diagonal(m, dim1=1, dim2=2) / (2.0 * root))
        return torch.matmul(torch.matmul(u, inner), u.transpose(1, 2)), None, None


class EigenForwardNewtonBackward(torch.autograd.Function):
    """svd-newton: exact eigen forward, backward = derivative of `iterations` Newton-Schulz steps at A."""

    @staticmethod
    def forward(ctx, a, iterations):
        lam, u = torch.linalg.eigh(a)
        root = torch.sqrt(lam.clamp_min(torch.finfo(a.dtype).eps))
        ctx.save_for_backward(a)
        ctx.iterations = iterations
        return torch.matmul(u * root[:, None, :], u.transpose(1, 2))

    @staticmethod
    def backward(ctx, ds):
        (a,) = ctx.saved_tensors
        with torch.enable_grad():
            at = a.detach().requires_grad_(True)
            (da,) = torch.autograd.grad(newton_schulz(at, ctx.iterations), at, ds)
        return da, None


# ---- MPA-Lya ---------------------------------------------------------------------------------

def sqrt_pade(m):
    """[m/m] Pade approximant of sqrt(1 - z): with s = sqrt(1 - z), n = 2m + 1, the polynomials
    a = (1+s)^n + (1-s)^n and b = ((1+s)^n - (1-s)^n) / s in z give a / b; exact integers, scaled
    so that q_0 = 1. Returns (p, q), lists of m + 1 floats."""
    n = 2 * m + 1
    p = [0] * (m + 1)
    q = [0] * (m + 1)
    for j in range(n + 1):
        c = math.comb(n, j)
        # (1+s)^n + (1-s)^n keeps even powers s^(2i) = (1 - z)^i; the difference / s keeps odd ones.
        i, odd = divmod(j, 2)
        target = q if odd else p
        for t in range(i + 1):
            target[t] += 2 * c * math.comb(i, t) * (-1) ** t
    q0 = q[0]
    return [v / q0 for v in p], [v / q0 for v in q]


class MpaLya(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, degree, iterations):
        p, q = sqrt_pade(degree)
        norm = torch.linalg.matrix_norm(a)[:, None, None]  # Frobenius
        eye = identity_like(a)
        z = eye - a / norm
        num = p[0] * eye
        den = q[0] * eye
        power = z
        for k in range(1, degree + 1):
            num = num + p[k] * power
            den = den + q[k] * power
            if k < degree:
                power = torch.matmul(power, z)
        s_hat = torch.linalg.solve(den, num)
        ctx.save_for_backward(s_hat, norm)
        ctx.iterations = iterations
        return s_hat * torch.sqrt(norm)

    @staticmethod
    def backward(ctx, ds):
        s_hat, norm = ctx.saved_tensors
        eye = identity_like(s_hat)
        b = s_hat
        c = sym(ds) / torch.sqrt(norm)
        for _ in range(ctx.iterations):
            b2 = torch.matmul(b, b)
            three = 3.0 * eye - b2
            c = 0.5 * (torch.matmul(c, three) - torch.matmul(b2, c) + torch.matmul(torch.matmul(b, c), b))
            b = 0.5 * torch.matmul(b, three)
        return 0.5 * c, None, None


# ---- the layer -------------------------------------------------------------------------------

METHODS = ('ns', 'svd', 'svd-trunc', 'svd-topn', 'svd-taylor', 'svd-pade', 'svd-pi', 'svd-newton',
           'svd-lyap', 'mpa-lya')


def default_precision(method, input_dtype=torch.float32):
    """covpool's default spectral precision: float64 for the eigen methods, else the input's."""
    return input_dtype if method in ('ns', 'mpa-lya') else torch.float64


def default_options(method, c):
    return {
        'iterations': {'ns': 5, 'svd-newton': 5, 'svd-pi': 19, 'mpa-lya': 8}.get(method),
        'degree': {'svd-taylor': 100, 'svd-pade': 50, 'mpa-lya': 5}.get(method),
        'kappa': 1e10,
        'n': max(1, c - round(50 * c / 256)),
    }


def gcp_layer(method, x, precision=None):
    """Full layer: features [B, C, N] -> [B, C(C+1)/2] in x's dtype."""
    if method not in METHODS:
        raise ValueError(f'unknown method {method!r}')
    dtype = precision or default_precision(method, x.dtype)
    a = covariance(x, dtype)
    opts = default_options(method, a.shape[-1])
    if method == 'ns':
        s = newton_schulz(a, opts['iterations'])
    elif method == 'svd-newton':
        s = EigenForwardNewtonBackward.apply(a, opts['iterations'])
    elif method == 'mpa-lya':
        s = MpaLya.apply(a, opts['degree'], opts['iterations'])
    else:
        s = EigenSqrt.apply(a, method, opts)
    return upper_triangle(s).to(x.dtype)
