"""MR fingerprinting (paper 001, Hermann et al. 2021): schedules, dictionary, matching, lesion mapping.

* :mod:`.schedule` — the per-frame schedule file (flip angle in degrees, TE/TR/TI in ms), its validation and hash;
* :mod:`.simulate` — the Bloch recursion of a schedule in torch (any T1/T2*/B1 arrays);
* :mod:`.dictionary` — the 51 x 114 x 9 (T1 x T2* x B1) dictionary, stored compressed with grid and schedule hash;
* :mod:`.match` — chunked normalised-inner-product matching (optional SVD compression, float64 refinement);
* :mod:`.denoise` — MP-PCA denoising of the frames (dipy, optional extra ``mrf``);
* :mod:`.frames_io` — frames as a 4D NIfTI (frames last) or a folder of 3D frames, schedule beside them; maps out;
* :mod:`.metrics`, :mod:`.plots` — relative deviation, Dice and lesion detection rate vs threshold;
* :mod:`.model`, :mod:`.dataset`, :mod:`.train` — the regression U-Net (35 frames -> T1, T2*, NAWM, GM, lesion)
  trained through :mod:`neuroshift.training` on SYNTHETIC phantom frames.

Heavy imports (torch) are inside the functions that need them.
"""
