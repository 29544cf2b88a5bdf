"""Scaling laws: from finished runs to a compute-optimal recipe.

`points` reads runs (a study's or a CSV), `approach2` and `law` fit the IsoFLOP parabolas and
the parametric law, `fit` combines them into one result, `recommend` turns a fit into N, D and
an expected loss for a budget, `compute` holds the FLOP convention and the shape rule for any
N, and `plan` lays out an IsoFLOP study's trials.

Above them: `study` runs a plan as an ordinary tuner study and reads its runs back, `recipe`
makes a recommendation a trainable RunConfig, `actions` is what `tuner scaling fit/recommend`
do, and the dashboard goes gather -> figures -> page. Those import tuner's study machinery
(and torch), so they are imported by module, never from here.
"""

from tuner.scaling.approach2 import Approach2Fit, IsoflopCurve, PowerLaw, fit_approach2
from tuner.scaling.compute import ComputeModel, ShapeRule
from tuner.scaling.fit import ScalingFit, fit_scaling_law
from tuner.scaling.law import LawFit, fit_law
from tuner.scaling.plan import (
    IsoflopPlan,
    PlanPoint,
    compute_model_for,
    plan_isoflop,
    plan_point,
    shape_rule_for,
)
from tuner.scaling.points import ScalingPoints, group_budgets, load_csv, make_points
from tuner.scaling.recommend import Recommendation, chinchilla_optimum, recommend

__all__ = [
    "Approach2Fit",
    "ComputeModel",
    "IsoflopCurve",
    "IsoflopPlan",
    "LawFit",
    "PlanPoint",
    "PowerLaw",
    "Recommendation",
    "ScalingFit",
    "ScalingPoints",
    "ShapeRule",
    "chinchilla_optimum",
    "compute_model_for",
    "fit_approach2",
    "fit_law",
    "fit_scaling_law",
    "group_budgets",
    "load_csv",
    "make_points",
    "plan_isoflop",
    "plan_point",
    "recommend",
    "shape_rule_for",
]
