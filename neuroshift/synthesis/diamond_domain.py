"""DiamondGAN's domain (availability) matrix: the 1-channel image its domain stream reads.

Two encodings, recorded per model as ``architecture["domain_encoding"]`` in the package manifest:

``"patterns"`` (the released behaviour, default for new models). [R] = hongweilibran/DiamondGAN, commit
``22a69c399812882093206632ff8f8c5f172f5037``, files ``train.py`` (training loop, "KEY COMPONENT") and
``test.py`` (``load_model_and_generate_synthetic_images``), data ``domain_matrix.npy`` (float64, 240x240x7)
and ``domain_dictionary.npy`` (int64, 7x3): read, not copied (the repository has no licence, so its file is
not shipped). [R] loads the 240x240x7 matrix, and for subset number ``dd`` of its dictionary
``[[1,0,0], [0,1,0], [0,0,1], [1,1,0], [0,1,1], [1,0,1], [1,1,1]]`` (source channels S1, S2, S3, here
FLAIR, T1, T2 in that order) feeds plane ``dd`` (tiled over the batch) to both generators, while the image
channels whose code is 0 are set to -1. There is one pattern per subset (not per channel), values 0 and 1,
never rescaled (the network input is fixed at 240x240). Every plane of [R]'s file is a rank-1 0/1 lattice,
``P[r, c] = row_k(r) * col_k(c)``; read off the file (this module's :data:`RELEASED_PATTERNS`):

====  =========  =========================================  ==============
 k    code       rows with 1                                 columns with 1
====  =========  =========================================  ==============
 0    1 0 0      r even, r <= 236                            c % 3 == 0
 1    0 1 0      r % 3 == 1, r <= 235                        c % 4 == 0
 2    0 0 1      r == 236 only                               c % 5 == 0
 3    1 1 0      r % 3 in {0, 1}, r <= 232                   c % 3 == 0
 4    0 1 1      r odd, r <= 233, and r == 234               c % 4 == 0
 5    1 0 1      r % 3 in {0, 2}, r <= 233                   c % 5 == 0
 6    1 1 1      r <= 232                                    c % 3 == 0
====  =========  =========================================  ==============

Ones per plane: 9520, 4740, 48, 12480, 7080, 7488, 18640. The patterns are not random (no seed is involved)
and :func:`released_patterns` reproduces [R]'s array bit for bit (float64, H x W x 7, C order: SHA-256
:data:`RELEASED_SHA256`, checked against the file when this was written and in the tests against the
literal). The irregular row ends (k = 2, 4, 6) are [R]'s, kept as released.

Other slice sizes (not defined by [R], whose input is 240x240 only): the slice is aligned with the canvas's
bottom-right corner and the plane extended periodically, pixel (r, c) of an H x W slice reads
``P_k[(r + 240 - H) mod 240, (c + 240 - W) mod 240]`` (identity at 240x240; a smaller slice is the bottom-right
crop). Why that corner: the T2-only plane has a single row of ones (row 236 of 240), so a top-left or centred
crop below ~237 rows would turn it into an all-zero, constant map, the degenerate case this option removes
(and where float32 rounding is amplified, see :mod:`.diamondgan`); anchored at the bottom-right every one of
the 7 planes varies in space for any slice of at least 8 x 8 pixels.

``"constant"`` (packages trained before this option, e.g. ``dir-demo`` 0.1.0): one value per subset,
``2 k / (2^n - 1) - 1`` with ``k = sum_i c_i 2^i``, spatially replicated. Through reflection padding and
instance norm a constant map gives the same domain-stream output for every code (exact arithmetic), so the
code then reaches the output only through the -1 fill of missing image channels; kept only so those
packages give the outputs they were trained and scored with.
"""

from __future__ import annotations

import torch

#: Per-model option values; the first is the default of new models.
ENCODINGS = ("patterns", "constant")
#: Encoding of packages whose manifest predates the option.
LEGACY_ENCODING = "constant"
#: [R]'s canvas (rows, columns) and its subset order (domain_dictionary.npy).
RELEASED_SIZE = (240, 240)
RELEASED_ORDER = ((1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (0, 1, 1), (1, 0, 1), (1, 1, 1))
#: Per subset (same order): rows = {r < row_stop : r % row_period in row_residues} | row_extra;
#: columns = {c : c % col_period == 0}. Read off [R]'s domain_matrix.npy (see the module docstring).
RELEASED_PATTERNS = (
    dict(row_period=2, row_residues=(0,), row_stop=237, row_extra=(), col_period=3),
    dict(row_period=3, row_residues=(1,), row_stop=236, row_extra=(), col_period=4),
    dict(row_period=1, row_residues=(), row_stop=0, row_extra=(236,), col_period=5),
    dict(row_period=3, row_residues=(0, 1), row_stop=233, row_extra=(), col_period=3),
    dict(row_period=2, row_residues=(1,), row_stop=234, row_extra=(234,), col_period=4),
    dict(row_period=3, row_residues=(0, 2), row_stop=234, row_extra=(), col_period=5),
    dict(row_period=1, row_residues=(0,), row_stop=233, row_extra=(), col_period=3),
)
#: SHA-256 of [R]'s domain_matrix.npy array data (float64, 240x240x7, C order; not the .npy header).
RELEASED_SHA256 = "553bb48cf9db0c8836e268989dc22ccd987f7e7cbda0f9327585ade6bfb0d48c"


def released_patterns() -> torch.Tensor:
    """[R]'s 7 planes, ``(7, 240, 240)`` float32 of 0/1, in :data:`RELEASED_ORDER`."""
    h, w = RELEASED_SIZE
    r = torch.arange(h)
    c = torch.arange(w)
    planes = []
    for spec in RELEASED_PATTERNS:
        rows = torch.zeros(h, dtype=torch.bool)
        for res in spec["row_residues"]:
            rows |= (r % spec["row_period"] == res) & (r < spec["row_stop"])
        for extra in spec["row_extra"]:
            rows[extra] = True
        cols = c % spec["col_period"] == 0
        planes.append((rows[:, None] & cols[None, :]).float())
    return torch.stack(planes)


def subset_index(available: torch.Tensor) -> torch.Tensor:
    """Index into :data:`RELEASED_ORDER` of each code of ``available`` ``(B, 3)``; ValueError otherwise."""
    if available.ndim != 2 or available.shape[1] != 3:
        raise ValueError(f"the released domain patterns are defined for 3 sources, got codes of shape "
                         f"{tuple(available.shape)}")
    order = torch.tensor(RELEASED_ORDER, dtype=available.dtype, device=available.device)
    match = (available[:, None, :] == order[None]).all(-1)
    if not bool(match.any(1).all()):
        raise ValueError("availability codes must be 0/1 with at least one source available")
    return match.float().argmax(1)


def pattern_matrix(available: torch.Tensor, spatial: tuple[int, int]) -> torch.Tensor:
    """``(B, 1, H, W)`` released planes of the codes, the slice aligned with the canvas's bottom-right corner
    and the pattern extended periodically (see the module docstring)."""
    h, w = (int(s) for s in spatial)
    idx = subset_index(available).cpu()
    rows = (torch.arange(h) + RELEASED_SIZE[0] - h) % RELEASED_SIZE[0]
    cols = (torch.arange(w) + RELEASED_SIZE[1] - w) % RELEASED_SIZE[1]
    planes = released_patterns()[idx][:, rows][:, :, cols]
    return planes[:, None].to(available.device)


def constant_matrix(available: torch.Tensor, spatial: tuple[int, ...]) -> torch.Tensor:
    """The legacy 1-channel matrix ``(B, 1, *spatial)``: subset index mapped to [-1, 1], replicated."""
    n = available.shape[1]
    weights = 2.0 ** torch.arange(n, dtype=torch.float32, device=available.device)
    k = (available.float() * weights).sum(1)
    value = 2.0 * k / (2 ** n - 1) - 1.0
    return value.view(-1, 1, *([1] * len(spatial))).expand(-1, 1, *spatial).contiguous()


def check_encoding(encoding: str, code_width: int) -> str:
    """``encoding`` if it is one of :data:`ENCODINGS` usable with ``code_width`` sources, else ValueError."""
    if encoding not in ENCODINGS:
        raise ValueError(f"domain_encoding must be one of {ENCODINGS}, got {encoding!r}")
    if encoding == "patterns" and int(code_width) != 3:
        raise ValueError(f"the released domain patterns exist for 3 sources only, got code_width={code_width}; "
                         "use domain_encoding='constant'")
    return encoding


def domain_matrix(available: torch.Tensor, spatial: tuple[int, ...], encoding: str = LEGACY_ENCODING) -> torch.Tensor:
    """The domain stream's input ``(B, 1, *spatial)`` float32 for codes ``available`` ``(B, n)``."""
    check_encoding(encoding, available.shape[1])
    if encoding == "patterns":
        return pattern_matrix(available, tuple(spatial))
    return constant_matrix(available, spatial)


__all__ = ["ENCODINGS", "LEGACY_ENCODING", "RELEASED_ORDER", "RELEASED_PATTERNS", "RELEASED_SIZE",
           "check_encoding", "constant_matrix", "domain_matrix", "pattern_matrix", "released_patterns",
           "subset_index"]
