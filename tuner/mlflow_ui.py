"""What the MLflow UI reads to open a tuner experiment on its training runs.

- `mlflow.experimentKind = custom_model_development`: from MLflow 3.4 the UI picked an
  experiment's page from this tag (without it, it asked or guessed from the runs and traces).
  MLflow 3.17's UI no longer reads it (its feature flag for the sidebar switch is on): the page
  follows the switch "GenAI / Model training" (remembered by the browser, GenAI by default) or
  a `workflowType` URL parameter, which `experiment_url` sets.
- `mlflow.experiment.primaryMetric.name`: the metric the run charts lead with.
- a saved view (the UI's "Views" menu; an experiment tag `mlflow.sharedViewState.ID`): trials
  listed flat rather than folded under the study's run, sorted by the objective, with the
  objective, the other validation metrics and the searched params as columns.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

KIND_TAG = "mlflow.experimentKind"
TRAINING_KIND = "custom_model_development"
PRIMARY_METRIC_TAG = "mlflow.experiment.primaryMetric.name"
VIEW_TAG_PREFIX = "mlflow.sharedViewState."
VIEW_ID = "tuner-runs"
"""The saved view's id: `?viewStateShareKey=tuner-runs` opens it."""
STUDY_METRICS = ("val_loss", "val_perplexity", "val_bpb", "val_accuracy")
FINAL_METRICS = ("test_loss", "test_perplexity", "test_bpb", "val_loss")


def study_tags(metric: str, direction: str, params: list[str]) -> dict[str, str]:
    """Experiment tags for a study: training page, objective first, a view of its trials."""
    columns = [metric, *(m for m in STUDY_METRICS if m != metric)]
    view = saved_view(
        f"tuner: trials by {metric}", "trial", metric, direction == "minimize", columns, params
    )
    return {KIND_TAG: TRAINING_KIND, PRIMARY_METRIC_TAG: metric, VIEW_TAG_PREFIX + VIEW_ID: view}


def final_tags() -> dict[str, str]:
    """Experiment tags for a `*-final` experiment: its runs by test loss."""
    view = saved_view("tuner: final runs by test_loss", "final", "test_loss", True, FINAL_METRICS)
    return {
        KIND_TAG: TRAINING_KIND,
        PRIMARY_METRIC_TAG: "test_loss",
        VIEW_TAG_PREFIX + VIEW_ID: view,
    }


def saved_view(
    name: str,
    run_kind: str,
    sort_metric: str,
    ascending: bool,
    metrics: tuple[str, ...] | list[str],
    params: tuple[str, ...] | list[str] = (),
) -> str:
    """The JSON the UI stores for a saved view of the runs table (MLflow 3.17's format)."""
    state: dict[str, Any] = {
        "searchFilter": f"tags.`tuner.kind` = '{run_kind}'",
        "orderByKey": f"metrics.`{sort_metric}`",
        "orderByAsc": ascending,
        "selectedColumns": [f"metrics.`{m}`" for m in metrics]
        + [f"params.`{p}`" for p in params]
        + ["attributes.`Dataset`"],
        "runsHiddenMode": "SHOW_ALL",
    }
    now = int(time.time() * 1000)
    view = {"name": name, "createdAt": now, "updatedAt": now, "state": json.dumps(state)}
    return json.dumps(view)


def experiment_url(ui_base: str, experiment_id: str) -> str:
    """A link that opens the experiment on its runs, in the training workflow, in tuner's view."""
    query = urlencode({"workflowType": "machine_learning", "viewStateShareKey": VIEW_ID})
    return f"{ui_base.rstrip('/')}/#/experiments/{experiment_id}/runs?{query}"


def objective_of(setting: str) -> tuple[str, str]:
    """(metric, direction) of the first objective in a parent run's `objective` param
    (`val_loss:minimize,n_params:minimize`)."""
    first = (setting or "val_loss:minimize").split(",")[0]
    metric, _, direction = first.partition(":")
    return metric or "val_loss", direction or "minimize"
