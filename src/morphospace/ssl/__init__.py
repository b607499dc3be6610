"""The self-supervised form encoder: galaxies as what they are, not as they happen to be seen.

The default model of morphospace (``model.preset = "form"``) is a VaDE over this encoder's
*form embedding* (:mod:`morphospace.vade`, which builds on this layer; nothing here knows the
VaDE). One module per step, framework code (Lightning modules) beside the plain functions:

``augment``    nuisance augmentations (rotation, flips, jitter, scale, seeing, noise),
               made on the galaxy's light with the sky kept (kornia for the warps);
``losses``     NT-Xent (SimCLR) and VICReg, from their papers;
``embedder``   the CNN trunk (ImageNet EfficientNet-Lite0, or a small CNN from scratch, from
               :mod:`morphospace.nets.backbones`), two pooled taps, the self-supervised head,
               the average over the 8 dihedral views;
``training``   self-supervised training of the head (frozen trunk: over a bank of views) or of
               the whole encoder (``form.train_trunk``, for GPUs).

Data flow: masked cube -> embedder -> form embedding, which the form-first VaDE clusters
(:mod:`morphospace.vade.form_train`).
"""
