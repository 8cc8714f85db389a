"""Activation kernels, forward (with a bias) and backward, each exactly as torch.nn defines it.

Activations are named by integer codes so that fused kernels can take them as plain arguments, with one
float64 parameter each (LeakyReLU's negative slope, ELU's alpha; ignored by the others); each kernel
branches on the code once and runs a plain loop per activation, which LLVM vectorises.
A derivative is taken either from the saved *output* y, where it is exact in it (ReLU' = [y > 0],
sigmoid' = y (1 - y), tanh' = 1 - y²), or — for the codes in ``NEEDS_Z`` — from the saved pre-activation
z: callers keep z for those codes only (``needs_z``) and pass an empty array otherwise.
NaN propagates (relu(NaN) is NaN). Every form is overflow-free for finite z (softplus switches to z above
20, as torch does; ELU uses expm1; SiLU the two-sided sigmoid; GELU's tails give 0 and z).
Scalars are made in the array's dtype (``one``): Numba promotes a bare int literal with float32 to float64.
GELU is the exception: with torch's float64 constants it computes in float64 and rounds to the dtype.
All arrays are 2-D ``(batch, features)``, C-contiguous, one float dtype; ``out`` may alias an input.
"""
import math
from collections import namedtuple

from numba import prange

from ._jit import internal_kernel, kernel, parallel_kernel, specialize

IDENTITY, RELU, SIGMOID, TANH, LEAKY_RELU, ELU, SILU, GELU, GELU_TANH, SOFTPLUS, MISH = range(11)
CODES = {"identity": IDENTITY, "relu": RELU, "sigmoid": SIGMOID, "tanh": TANH, "leaky_relu": LEAKY_RELU,
         "elu": ELU, "silu": SILU, "gelu": GELU, "gelu_tanh": GELU_TANH, "softplus": SOFTPLUS,
         "mish": MISH}
#: codes whose derivative reads the pre-activation z (the others read the output y)
NEEDS_Z = frozenset((LEAKY_RELU, ELU, SILU, GELU, GELU_TANH, SOFTPLUS, MISH))
SOFTPLUS_THRESHOLD = 20.0          # torch.nn.Softplus(beta=1, threshold=20)
# GELU's constants computed as torch computes them (M_SQRT1_2, M_2_SQRTPI, M_SQRT2), so that the results agree
_SQRT1_2 = 0.70710678118654752440                          # 1/sqrt(2)
_GELU_PDF = 1.12837916709551257390 * _SQRT1_2 * 0.5        # 1/sqrt(2 pi)
_SQRT_2_PI = 1.41421356237309504880 * 1.12837916709551257390 * 0.5   # sqrt(2/pi)
_KAPPA = 0.044715


def needs_z(code):
    """True when the derivative of activation ``code`` is computed from the pre-activation z."""
    return code in NEEDS_Z


@internal_kernel
def sigmoid(z, one):
    """1 / (1 + exp(-z)) without overflow for either sign of z."""
    if z >= 0:
        return one / (one + math.exp(-z))
    e = math.exp(z)
    return e / (one + e)


# -- scalar forms of the z-derivative activations: f(z, p, one) and f'(z, p, one), p in z's dtype ------------
@internal_kernel
def leaky_relu(z, p, one):
    return z if z > 0 else z * p


@internal_kernel
def leaky_relu_grad(z, p, one):
    return one if z > 0 else p


@internal_kernel
def elu(z, p, one):
    return z if z > 0 else p * math.expm1(z)


@internal_kernel
def elu_grad(z, p, one):
    return one if z > 0 else p * math.exp(z)


@internal_kernel
def silu(z, p, one):
    return z * sigmoid(z, one)


@internal_kernel
def silu_grad(z, p, one):
    s = sigmoid(z, one)
    return s * (one + z * (one - s))


@internal_kernel
def gelu(z, p, one):
    """z Φ(z) = z/2 (1 + erf(z/√2)), torch's exact GELU (its constants in float64, as torch computes)."""
    return z * 0.5 * (1.0 + math.erf(z * _SQRT1_2))


@internal_kernel
def gelu_grad(z, p, one):
    return 0.5 * (1.0 + math.erf(z * _SQRT1_2)) + z * (_GELU_PDF * math.exp(z * z * -0.5))


@internal_kernel
def gelu_tanh(z, p, one):
    """z/2 (1 + tanh(√(2/π) (z + 0.044715 z³))), torch's GELU(approximate="tanh")."""
    return 0.5 * z * (1.0 + math.tanh(_SQRT_2_PI * (z + _KAPPA * (z * z * z))))


@internal_kernel
def gelu_tanh_grad(z, p, one):
    z2 = z * z
    t = math.tanh(_SQRT_2_PI * (z + _KAPPA * (z2 * z)))
    return 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * (_SQRT_2_PI * (1.0 + 3.0 * _KAPPA * z2))   # torch's order


@internal_kernel
def softplus(z, p, one):
    return z if z > SOFTPLUS_THRESHOLD else math.log1p(math.exp(z))


@internal_kernel
def softplus_grad(z, p, one):
    if z > SOFTPLUS_THRESHOLD:
        return one
    e = math.exp(z)
    return e / (e + one)


@internal_kernel
def mish(z, p, one):
    """z tanh(softplus(z)), torch.nn.Mish (softplus without threshold there: above 20, tanh is 1 either way)."""
    return z * math.tanh(softplus(z, p, one))


@internal_kernel
def mish_grad(z, p, one):
    """tanh(sp) + z sigmoid(z) (1 - tanh(sp)²), sp = softplus(z): torch's mish_backward."""
    t = math.tanh(softplus(z, p, one))
    return t + z * sigmoid(z, one) * (one - t * t)


def _bias_activate(z, b, code, param, out):
    """out = f(z + b), b (features,) broadcast over rows; ``param``: the activation's parameter (float)."""
    n, m = out.shape
    one = out.dtype.type(1)
    zero = one - one
    p = out.dtype.type(param)
    if code == RELU:
        for i in prange(n):
            for j in range(m):
                v = z[i, j] + b[j]
                out[i, j] = v if not v <= zero else zero
    elif _SMOOTH and code == SIGMOID:
        for i in prange(n):
            for j in range(m):
                out[i, j] = sigmoid(z[i, j] + b[j], one)
    elif _SMOOTH and code == TANH:
        for i in prange(n):
            for j in range(m):
                out[i, j] = math.tanh(z[i, j] + b[j])
    elif code == LEAKY_RELU:
        for i in prange(n):
            for j in range(m):
                out[i, j] = leaky_relu(z[i, j] + b[j], p, one)
    elif _SMOOTH and code == ELU:
        for i in prange(n):
            for j in range(m):
                out[i, j] = elu(z[i, j] + b[j], p, one)
    elif _SMOOTH and code == SILU:
        for i in prange(n):
            for j in range(m):
                out[i, j] = silu(z[i, j] + b[j], p, one)
    elif _SMOOTH and code == GELU:
        for i in prange(n):
            for j in range(m):
                out[i, j] = gelu(z[i, j] + b[j], p, one)
    elif _SMOOTH and code == GELU_TANH:
        for i in prange(n):
            for j in range(m):
                out[i, j] = gelu_tanh(z[i, j] + b[j], p, one)
    elif _SMOOTH and code == SOFTPLUS:
        for i in prange(n):
            for j in range(m):
                out[i, j] = softplus(z[i, j] + b[j], p, one)
    elif _SMOOTH and code == MISH:
        for i in prange(n):
            for j in range(m):
                out[i, j] = mish(z[i, j] + b[j], p, one)
    else:
        for i in prange(n):
            for j in range(m):
                out[i, j] = z[i, j] + b[j]


def _multiply_derivative(code, param, y, z, dy, out):
    """out = dy * f'(z), f' written through the output y = f(z) or read at the pre-activation z (codes in
    NEEDS_Z; for the others z may be empty); out may be dy itself."""
    if out.ctypes.data == dy.ctypes.data:
        scale_by_derivative(code, param, y, z, out)
        return
    n, m = out.shape
    one = out.dtype.type(1)
    zero = one - one
    p = out.dtype.type(param)
    if code == RELU:      # (no temporary for dy[i, j]: with one, Numba's code is not vectorised, ~4x slower)
        for i in prange(n):
            for j in range(m):
                out[i, j] = dy[i, j] if y[i, j] > zero else zero
    elif _SMOOTH and code == SIGMOID:
        for i in prange(n):
            for j in range(m):
                out[i, j] = dy[i, j] * (y[i, j] * (one - y[i, j]))
    elif _SMOOTH and code == TANH:
        for i in prange(n):
            for j in range(m):
                out[i, j] = dy[i, j] * (one - y[i, j] * y[i, j])
    elif code == LEAKY_RELU:
        for i in prange(n):
            for j in range(m):
                out[i, j] = dy[i, j] * leaky_relu_grad(z[i, j], p, one)
    elif _SMOOTH and code == ELU:
        for i in prange(n):
            for j in range(m):
                out[i, j] = dy[i, j] * elu_grad(z[i, j], p, one)
    elif _SMOOTH and code == SILU:
        for i in prange(n):
            for j in range(m):
                out[i, j] = dy[i, j] * silu_grad(z[i, j], p, one)
    elif _SMOOTH and code == GELU:
        for i in prange(n):
            for j in range(m):
                out[i, j] = dy[i, j] * gelu_grad(z[i, j], p, one)
    elif _SMOOTH and code == GELU_TANH:
        for i in prange(n):
            for j in range(m):
                out[i, j] = dy[i, j] * gelu_tanh_grad(z[i, j], p, one)
    elif _SMOOTH and code == SOFTPLUS:
        for i in prange(n):
            for j in range(m):
                out[i, j] = dy[i, j] * softplus_grad(z[i, j], p, one)
    elif _SMOOTH and code == MISH:
        for i in prange(n):
            for j in range(m):
                out[i, j] = dy[i, j] * mish_grad(z[i, j], p, one)
    else:
        for i in prange(n):
            for j in range(m):
                out[i, j] = dy[i, j]


def _scale_by_derivative(code, param, y, z, d):
    """d *= f'(z) in place, f' as in ``multiply_derivative``. A loop of its own: written as
    out = dy * f' with out and dy the same array, LLVM's overlap check fails and the loop runs scalar
    (3x slower). Called from kernels only."""
    n, m = d.shape
    one = d.dtype.type(1)
    zero = one - one
    p = d.dtype.type(param)
    if code == RELU:      # (no temporary for d[i, j]: with one, Numba's code is not vectorised, ~4x slower)
        for i in range(n):
            for j in range(m):
                d[i, j] = d[i, j] if y[i, j] > zero else zero
    elif _SMOOTH and code == SIGMOID:
        for i in range(n):
            for j in range(m):
                d[i, j] *= y[i, j] * (one - y[i, j])
    elif _SMOOTH and code == TANH:
        for i in range(n):
            for j in range(m):
                d[i, j] *= one - y[i, j] * y[i, j]
    elif code == LEAKY_RELU:
        for i in range(n):
            for j in range(m):
                d[i, j] *= leaky_relu_grad(z[i, j], p, one)
    elif _SMOOTH and code == ELU:
        for i in range(n):
            for j in range(m):
                d[i, j] *= elu_grad(z[i, j], p, one)
    elif _SMOOTH and code == SILU:
        for i in range(n):
            for j in range(m):
                d[i, j] *= silu_grad(z[i, j], p, one)
    elif _SMOOTH and code == GELU:
        for i in range(n):
            for j in range(m):
                d[i, j] *= gelu_grad(z[i, j], p, one)
    elif _SMOOTH and code == GELU_TANH:
        for i in range(n):
            for j in range(m):
                d[i, j] *= gelu_tanh_grad(z[i, j], p, one)
    elif _SMOOTH and code == SOFTPLUS:
        for i in range(n):
            for j in range(m):
                d[i, j] *= softplus_grad(z[i, j], p, one)
    elif _SMOOTH and code == MISH:
        for i in range(n):
            for j in range(m):
                d[i, j] *= mish_grad(z[i, j], p, one)


@kernel
def add_bias(z, b):
    """z += b, b (features,) broadcast over rows: the pre-activation that a z-derivative reads. (The same
    sum as ``bias_activate`` with IDENTITY; a function of its own, so that no call compiles a second,
    literal-code signature of bias_activate.)"""
    n, m = z.shape
    for i in range(n):
        for j in range(m):
            z[i, j] = z[i, j] + b[j]


#: One set of the kernels above per group of activation codes: "all" runs every code; "piecewise" only
#: the codes in PIECEWISE (the others would be taken as the identity: ``group`` picks it for codes of
#: PIECEWISE only). The smooth codes' branches are cut out of the piecewise kernels before typing (the
#: ``_SMOOTH and code == ...`` tests on a global constant), so a network of ReLUs compiles none of them,
#: nor the drivers that link these kernels (see kernels/_jit.py's measurements).
ActivationKernels = namedtuple("ActivationKernels",
                               "bias_activate bias_activate_parallel multiply_derivative "
                               "multiply_derivative_parallel scale_by_derivative")
#: the activations that are a comparison and a multiply per element (no exp, tanh, erf)
PIECEWISE = frozenset((IDENTITY, RELU, LEAKY_RELU))
GROUPS = ("all", "piecewise")
_SMOOTH = True        # bound per group by specialize()


def group(codes):
    """The group of kernels that runs every activation code in ``codes`` (any iterable of codes)."""
    return "piecewise" if all(int(c) in PIECEWISE for c in codes) else "all"


def _group_kernels(name):
    smooth = name == "all"
    suffix = "" if smooth else "_" + name
    scale = specialize(_scale_by_derivative, name, compile_with=internal_kernel, _SMOOTH=smooth)
    return ActivationKernels(
        specialize(_bias_activate, name, _SMOOTH=smooth),
        specialize(_bias_activate, "parallel" + suffix, compile_with=parallel_kernel, _SMOOTH=smooth),
        specialize(_multiply_derivative, name, _SMOOTH=smooth, scale_by_derivative=scale),
        specialize(_multiply_derivative, "parallel" + suffix, compile_with=parallel_kernel, _SMOOTH=smooth,
                   scale_by_derivative=scale),
        scale)


KERNELS = {name: _group_kernels(name) for name in GROUPS}


def kernels_for(codes):
    """The ActivationKernels of the smallest group that runs every code in ``codes``."""
    return KERNELS[group(codes)]


#: the kernels of every code (group "all"), under the names callers have always used
bias_activate, bias_activate_parallel, multiply_derivative, multiply_derivative_parallel, scale_by_derivative = \
    KERNELS["all"]
