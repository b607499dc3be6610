"""The CNN feature study (``morphospace study``).

``finetune``  :class:`~morphospace.study.finetune.FineTuner`, transfer learning of a backbone
              (:mod:`morphospace.nets.backbones`) on galaxy labels, scikit-learn-like;
``features``  the run stage: fine-tune (or freeze) a backbone, write the ``features`` embedding;
``figures``   the study's figures: maps, k-selection curves, cluster galleries.
"""
