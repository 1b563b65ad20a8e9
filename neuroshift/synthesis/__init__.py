"""LesionSynth: multi-contrast synthesis with missing inputs (DiamondGAN), lesion-focused DIR with MC-dropout
uncertainty (synthDIR, pix2pix), virtual contrast-enhanced T1 (3D U-Net), their losses and region-wise metrics.

Science and acceptance checks: ``docs/synthesis.md`` of the project guide (dissertation 003 ch. 5-6, paper 004).

* :mod:`.diamondgan` — two-stream ResNet generator (7,218,987 parameters in the released layout) and the
  PatchGAN discriminator (2,766,529 / 2,764,481), availability codes and the 7 input subsets;
* :mod:`.pix2pix` — synthDIR U-Net with dropout p = 0.3 before the last layer (MC sampling) and a conditional
  PatchGAN;
* :mod:`.vt1c` — the virtual T1c 3D U-Net (MONAI ``BasicUNet``, LeakyReLU 0.2, sigmoid);
* :mod:`.losses` — cycle (L_rec), least-squares adversarial, lesion-focused reconstruction, L2;
* :mod:`.metrics` — PSNR / SSIM / MAE over brain, lesion and NAWM, LBR, CNR, enhancement AUC (Otsu);
* :mod:`.tta` — flip test-time augmentation and MC-dropout sampling.

Layering: imports torch, MONAI, ``training``, ``phantom`` and ``simulate``; never the CLI or Slicer. Heavy
modules are imported by the caller (``from neuroshift.synthesis.diamondgan import ...``).
"""
