"""The stages of a run, in data-flow order, each reading what the previous wrote.

ingest -> cube + catalogue -> model (train) -> embedding (embed) -> reductions ->
clusterings -> comparisons (+ nuisance audit) -> report

Every stage takes a :class:`~morphospace.run.RunDir` and a resolved
:class:`~morphospace.config.Config`, so any stage can be re-run alone on an existing
run. :func:`run_all` runs them in order (``morphospace run``).

Modules, in the order they run: :mod:`.survey` (the survey made or found, the settings saved,
the ingest), :mod:`.stages` (train to report, and :func:`run_all`), :mod:`.study` (the CNN
feature study's own flow) and :mod:`.models` (a trained model's uses outside the flow).
"""

from .models import embed_image, stage_generate, stage_import_astrovader
from .stages import (primary_embedding, run_all, stage_anomaly, stage_cluster, stage_compare, stage_embed,
                     stage_reduce, stage_report, stage_train, trained_preset)
from .study import run_study
from .survey import (check_data, check_not_a_survey, config_restored_on_failure, default_survey_dir, ensure_survey,
                     ingest_run, removed_on_failure, save_config, saved_config, stage_ingest, stage_synth)

__all__ = ["check_data", "check_not_a_survey", "config_restored_on_failure", "default_survey_dir", "embed_image", "ensure_survey",
           "ingest_run", "primary_embedding", "removed_on_failure", "run_all", "run_study", "save_config", "saved_config",
           "stage_anomaly", "stage_cluster", "stage_compare", "stage_embed", "stage_generate",
           "stage_import_astrovader", "stage_ingest", "stage_reduce", "stage_report", "stage_synth", "stage_train",
           "trained_preset"]
