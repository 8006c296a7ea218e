r"""Paper 000's dynamic Gaussian renderer (talkjax/tasks/renderer.py, model ``gaussian_renderer``).

Tang, Liu, Li, "Continuous Talking Face Generation Based on Gaussian Blur and Dynamic Convolution"
(Sensors 2025), section 3.2: IP_LAP's flow and translation modules with the Gaussian blur guiding
mechanism (the lower-half mask blurred by a 5x5, sigma 1.0 Gaussian; the blur-guided image combined
with the target sketch; 2k+1 = 5 sketches around the target). Loss ``2.5 L_w + 4 L_r + 1000 L_s``
(the paper lists no adversarial term, so no discriminator), batch 16, Adam 1e-4, 5 references, 128 px.

Commands:
  python -m experiments.train --config=gaussian_renderer --workdir=/tmp/gaussian_renderer
  python -m experiments.train --config=gaussian_renderer:runlocal --workdir=/tmp/gaussian_local
  python -m experiments.train --config=gaussian_renderer:runlocal,no_gs --workdir=/tmp/gaussian_local_no_gs
  python -m experiments.generate --config=gaussian_renderer:runlocal --workdir=/tmp/gaussian_local \
      --landmark_workdir=/tmp/dct_lm_local --face=face.png --audio=speech.wav --output=out.mp4

Variants (comma-separated): ``no_gs`` (the paper's Table 4 ablation: the hard mask instead of the
Gaussian-blurred one; nothing else changes), ``runlocal`` (the CPU-sized setting of
experiments/configs/iplap_renderer.py, 20 minutes on 2 cores), ``gan`` (add IP_LAP's discriminator),
``steps=<int>``, ``warmup=<int>``. Expected figures (``render/seam`` lower than with ``no_gs``,
``render/openness_r``, PSNR/SSIM): BUILD_NOTES.md. The warp is the exact one (``p + flow(p)``), not
IP_LAP's grid quirk: this model is trained from scratch.
"""

from experiments.configs.iplap_renderer import renderer_config


def get_config(arg=None):
  c, arg = renderer_config("gaussian_renderer", arg, extra_variants=dict(no_gs=False), batch_size=16,
                           num_references=5, warp="exact", gan=False)
  if not arg.runlocal:
    c.warmup_steps = 10_000   # IP_LAP's warp-only start, in steps of batch 16 (paper 000 is silent).
  c.model.mask_blur = not arg.no_gs
  c.lock()
  return c
