"""Model families AutoML searches: their estimators, search spaces and first (default) configs.

A family turns an Optuna trial into constructor arguments (`suggest`); `estimator` builds the
scikit-learn compatible estimator from them and `source` writes the same constructor call as
code. Search-space names are prefixed with the family (`lightgbm.num_leaves`) so one study can
hold every family; `defaults` are enqueued as the first trials, so a usable baseline of each
family exists within seconds.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna

from modelyard.automl.metrics import CLASSIFICATION, REGRESSION

FRAMEWORKS = ("sklearn", "lightgbm", "xgboost", "statsmodels")
SMALL_DATA_ROWS = 10_000  # neighbour models only up to this size: predictions scan every row
# Kernel SVMs only up to this size: their fit is one call into libsvm, which the time budget
# cannot stop (automl/deadline.py stops fits when they return to Python), and its time grows
# with the square of the rows or worse: at 10,000 rows one fit took 22 s, with calibration
# and CV a trial makes 11 of them, each of which may run past the budget.
SVM_MAX_ROWS = 2_000
# CalibratedClassifierCV fits on 4/5 of what it gets: a class with one row would be missing
# from one of those fits, and it refuses.
CALIBRATION_CLASS_ROWS = 2


@dataclass(frozen=True)
class Context:
    problem: str
    n_rows: int
    n_classes: int = 0
    imbalanced: bool = False
    # Classification: fewest rows a class has in any set a model is fit on.
    rarest_fit_class: int = 0
    seed: int = 0
    n_jobs: int = 1
    weighted: bool = False  # fits take each row's sample weight


@dataclass(frozen=True)
class Spec:
    """What to construct: `module.cls(**kwargs)`, optionally wrapped."""

    module: str
    cls: str
    kwargs: dict[str, Any]
    # "labels": LabelEncodedClassifier; "scaled_target": regress a standardized target;
    # "calibrated": probabilities by cross-validated calibration (SVC has none of its own)
    wrapper: str | None = None


@dataclass(frozen=True)
class Family:
    name: str
    framework: str
    problems: tuple[str, ...]
    suggest: Callable[[optuna.trial.BaseTrial, Context], Spec]
    defaults: Callable[[Context], dict[str, Any]]
    # Only on tables of at most this many rows, and why (for the note saying it was left out).
    max_rows: int | None = None
    max_rows_why: str = ""
    # Classification only: rows every class needs in a fit (probability calibration's folds).
    class_rows: int = 0
    takes_sample_weight: bool = True  # its fit has a sample_weight argument

    def available(self, ctx: Context) -> bool:
        return (
            ctx.problem in self.problems
            and not self.too_many_rows(ctx)
            and (self.takes_sample_weight or not ctx.weighted)
        )

    def too_many_rows(self, ctx: Context) -> bool:
        return self.max_rows is not None and ctx.n_rows > self.max_rows

    def too_few_class_rows(self, ctx: Context) -> bool:
        return ctx.problem == CLASSIFICATION and ctx.rarest_fit_class < self.class_rows

    def enqueued(self, ctx: Context) -> dict[str, Any]:
        return {
            "model_family": self.name,
            **{f"{self.name}.{k}": v for k, v in self.defaults(ctx).items()},
        }


def _p(trial: optuna.trial.BaseTrial, family: str) -> Callable[..., Any]:
    """A suggest helper that prefixes parameter names with the family."""

    def suggest(kind: str, name: str, *args: Any, **kwargs: Any) -> Any:
        return getattr(trial, f"suggest_{kind}")(f"{family}.{name}", *args, **kwargs)

    return suggest


def _class_weight(s: Callable[..., Any], ctx: Context) -> dict[str, Any]:
    if ctx.problem == CLASSIFICATION and ctx.imbalanced:
        return {"class_weight": s("categorical", "class_weight", [None, "balanced"])}
    return {}


def _weight_default(ctx: Context) -> dict[str, Any]:
    return {"class_weight": "balanced"} if ctx.problem == CLASSIFICATION and ctx.imbalanced else {}


# -- scikit-learn --------------------------------------------------------------------------------


def _linear(trial: optuna.trial.BaseTrial, ctx: Context) -> Spec:
    s = _p(trial, "linear")
    if ctx.problem == CLASSIFICATION:
        kwargs = {"C": s("float", "C", 1e-4, 1e3, log=True), "max_iter": 2000}
        kwargs.update(_class_weight(s, ctx))
        return Spec("sklearn.linear_model", "LogisticRegression", kwargs)
    kwargs = {
        "alpha": s("float", "alpha", 1e-6, 10.0, log=True),
        "l1_ratio": s("float", "l1_ratio", 0.0, 1.0),
        "max_iter": 5000,
    }
    return Spec("sklearn.linear_model", "ElasticNet", kwargs)


def _linear_defaults(ctx: Context) -> dict[str, Any]:
    if ctx.problem == CLASSIFICATION:
        return {"C": 1.0, **_weight_default(ctx)}
    return {"alpha": 1e-3, "l1_ratio": 0.5}


def _trees(kind: str) -> Callable[[optuna.trial.BaseTrial, Context], Spec]:
    def suggest(trial: optuna.trial.BaseTrial, ctx: Context) -> Spec:
        s = _p(trial, kind)
        kwargs: dict[str, Any] = {
            "n_estimators": s("int", "n_estimators", 50, 500, log=True),
            "max_features": s(
                "categorical", "max_features", ["sqrt", "log2", 0.25, 0.5, 0.75, 1.0]
            ),
            "min_samples_leaf": s("int", "min_samples_leaf", 1, 32, log=True),
        }
        if ctx.problem == CLASSIFICATION:
            kwargs["criterion"] = s("categorical", "criterion", ["gini", "entropy"])
            kwargs.update(_class_weight(s, ctx))
        kwargs.update(random_state=ctx.seed, n_jobs=ctx.n_jobs)
        prefix = "RandomForest" if kind == "random_forest" else "ExtraTrees"
        suffix = "Classifier" if ctx.problem == CLASSIFICATION else "Regressor"
        # scikit-learn 1.9's forests look class weights up by int(label), so labels such as
        # "0" / "1" fail every fit ("The classes, [0, 1], are not in class_weight"): weighted
        # forests learn labels encoded as 0..k-1.
        wrapper = "labels" if kwargs.get("class_weight") else None
        return Spec("sklearn.ensemble", prefix + suffix, kwargs, wrapper=wrapper)

    return suggest


def _trees_defaults(ctx: Context) -> dict[str, Any]:
    out: dict[str, Any] = {
        "n_estimators": 200,
        "max_features": "sqrt" if ctx.problem == CLASSIFICATION else 1.0,
        "min_samples_leaf": 1,
    }
    if ctx.problem == CLASSIFICATION:
        out.update(criterion="gini", **_weight_default(ctx))
    return out


def _svm(trial: optuna.trial.BaseTrial, ctx: Context) -> Spec:
    s = _p(trial, "svm")
    kwargs: dict[str, Any] = {
        "C": s("float", "C", 1e-2, 1e3, log=True),
        "gamma": s("float", "gamma", 1e-4, 1.0, log=True),
    }
    if ctx.problem == CLASSIFICATION:
        kwargs.update(_class_weight(s, ctx))
        return Spec("sklearn.svm", "SVC", kwargs, wrapper="calibrated")
    kwargs["epsilon"] = s("float", "epsilon", 1e-3, 1.0, log=True)
    return Spec("sklearn.svm", "SVR", kwargs, wrapper="scaled_target")


def _svm_defaults(ctx: Context) -> dict[str, Any]:
    out: dict[str, Any] = {"C": 1.0, "gamma": 0.01}
    if ctx.problem == CLASSIFICATION:
        out.update(_weight_default(ctx))
    else:
        out["epsilon"] = 0.1
    return out


def _knn(trial: optuna.trial.BaseTrial, ctx: Context) -> Spec:
    s = _p(trial, "knn")
    kwargs = {
        "n_neighbors": s("int", "n_neighbors", 1, 50, log=True),
        "weights": s("categorical", "weights", ["uniform", "distance"]),
        "p": s("categorical", "p", [1, 2]),
        "n_jobs": ctx.n_jobs,
    }
    cls = "KNeighborsClassifier" if ctx.problem == CLASSIFICATION else "KNeighborsRegressor"
    return Spec("sklearn.neighbors", cls, kwargs)


# -- gradient boosting ---------------------------------------------------------------------------


def _lightgbm(trial: optuna.trial.BaseTrial, ctx: Context) -> Spec:
    s = _p(trial, "lightgbm")
    kwargs: dict[str, Any] = {
        "n_estimators": s("int", "n_estimators", 16, 1024, log=True),
        "learning_rate": s("float", "learning_rate", 0.01, 0.3, log=True),
        "num_leaves": s("int", "num_leaves", 4, 256, log=True),
        "min_child_samples": s("int", "min_child_samples", 2, 64, log=True),
        "subsample": s("float", "subsample", 0.5, 1.0),
        "subsample_freq": 1,
        "colsample_bytree": s("float", "colsample_bytree", 0.3, 1.0),
        "reg_alpha": s("float", "reg_alpha", 1e-8, 10.0, log=True),
        "reg_lambda": s("float", "reg_lambda", 1e-8, 10.0, log=True),
    }
    kwargs.update(_class_weight(s, ctx))
    kwargs.update(random_state=ctx.seed, n_jobs=ctx.n_jobs, verbose=-1)
    cls = "LGBMClassifier" if ctx.problem == CLASSIFICATION else "LGBMRegressor"
    return Spec("lightgbm", cls, kwargs)


def _lightgbm_defaults(ctx: Context) -> dict[str, Any]:
    return {
        "n_estimators": 100,
        "learning_rate": 0.1,
        "num_leaves": 31,
        "min_child_samples": 20,
        "subsample": 1.0,
        "colsample_bytree": 1.0,
        "reg_alpha": 1e-8,
        "reg_lambda": 1e-8,
        **_weight_default(ctx),
    }


def _xgboost(trial: optuna.trial.BaseTrial, ctx: Context) -> Spec:
    s = _p(trial, "xgboost")
    kwargs: dict[str, Any] = {
        "n_estimators": s("int", "n_estimators", 16, 1024, log=True),
        "max_depth": s("int", "max_depth", 2, 10),
        "learning_rate": s("float", "learning_rate", 0.01, 0.3, log=True),
        "subsample": s("float", "subsample", 0.5, 1.0),
        "colsample_bytree": s("float", "colsample_bytree", 0.3, 1.0),
        "min_child_weight": s("float", "min_child_weight", 0.5, 16.0, log=True),
        "reg_lambda": s("float", "reg_lambda", 1e-3, 10.0, log=True),
        "reg_alpha": s("float", "reg_alpha", 1e-8, 1.0, log=True),
    }
    if ctx.problem == CLASSIFICATION and ctx.imbalanced and ctx.n_classes == 2:
        kwargs["scale_pos_weight"] = s("float", "scale_pos_weight", 1.0, 20.0, log=True)
    kwargs.update(tree_method="hist", random_state=ctx.seed, n_jobs=ctx.n_jobs, verbosity=0)
    if ctx.problem == CLASSIFICATION:
        return Spec("xgboost", "XGBClassifier", kwargs, wrapper="labels")
    return Spec("xgboost", "XGBRegressor", kwargs)


def _xgboost_defaults(ctx: Context) -> dict[str, Any]:
    out: dict[str, Any] = {
        "n_estimators": 100,
        "max_depth": 6,
        "learning_rate": 0.1,
        "subsample": 1.0,
        "colsample_bytree": 1.0,
        "min_child_weight": 1.0,
        "reg_lambda": 1.0,
        "reg_alpha": 1e-8,
    }
    if ctx.problem == CLASSIFICATION and ctx.imbalanced and ctx.n_classes == 2:
        out["scale_pos_weight"] = 1.0
    return out


BOTH = (CLASSIFICATION, REGRESSION)
# In the order their defaults are tried: quick, strong baselines first.
FAMILIES: tuple[Family, ...] = (
    Family("lightgbm", "lightgbm", BOTH, _lightgbm, _lightgbm_defaults),
    Family("linear", "sklearn", BOTH, _linear, _linear_defaults),
    Family("xgboost", "xgboost", BOTH, _xgboost, _xgboost_defaults),
    Family("random_forest", "sklearn", BOTH, _trees("random_forest"), _trees_defaults),
    Family(
        "svm",
        "sklearn",
        BOTH,
        _svm,
        _svm_defaults,
        max_rows=SVM_MAX_ROWS,
        max_rows_why="its fit is one call the time budget cannot stop, slower with every row",
        class_rows=CALIBRATION_CLASS_ROWS,
    ),
    Family("extra_trees", "sklearn", BOTH, _trees("extra_trees"), _trees_defaults),
    Family(
        "knn",
        "sklearn",
        BOTH,
        _knn,
        lambda ctx: {"n_neighbors": 5, "weights": "distance", "p": 2},
        max_rows=SMALL_DATA_ROWS,
        max_rows_why="its predictions compare each row with every training row",
        takes_sample_weight=False,
    ),
)


def available(ctx: Context, exclude_frameworks: tuple[str, ...] = ()) -> list[Family]:
    return [f for f in FAMILIES if f.available(ctx) and f.framework not in exclude_frameworks]


def too_many_rows_notes(ctx: Context, exclude_frameworks: tuple[str, ...] = ()) -> list[str]:
    """What to tell the user of each family left out for the table's size."""
    return [
        f"{f.name} left out: the data has {ctx.n_rows:,} rows, more than the {f.max_rows:,} it "
        f"is tried on ({f.max_rows_why}); pass a sample of the rows to include it"
        for f in FAMILIES
        if ctx.problem in f.problems
        and f.framework not in exclude_frameworks
        and f.too_many_rows(ctx)
    ]


def unweighted_notes(ctx: Context, exclude_frameworks: tuple[str, ...] = ()) -> list[str]:
    """What to tell the user of each family left out as it cannot weigh rows."""
    return [
        f"{f.name} left out: it cannot fit with sample weights (sample_weight_col)"
        for f in FAMILIES
        if ctx.weighted
        and ctx.problem in f.problems
        and f.framework not in exclude_frameworks
        and not f.takes_sample_weight
    ]


# -- building and writing estimators ------------------------------------------------------------


def estimator(spec: Spec) -> Any:
    cls = getattr(importlib.import_module(spec.module), spec.cls)
    model = cls(**spec.kwargs)
    if spec.wrapper == "labels":
        from modelyard.automl.transformers import LabelEncodedClassifier

        return LabelEncodedClassifier(model)
    if spec.wrapper == "scaled_target":
        from sklearn.compose import TransformedTargetRegressor
        from sklearn.preprocessing import StandardScaler

        return TransformedTargetRegressor(regressor=model, transformer=StandardScaler())
    if spec.wrapper == "calibrated":
        from sklearn.calibration import CalibratedClassifierCV

        return CalibratedClassifierCV(model, ensemble=False)
    return model


def imports(spec: Spec) -> list[str]:
    lines = [f"from {spec.module} import {spec.cls}"]
    if spec.wrapper == "labels":
        lines.append("from modelyard.automl.transformers import LabelEncodedClassifier")
    if spec.wrapper == "scaled_target":
        lines.append("from sklearn.compose import TransformedTargetRegressor")
        lines.append("from sklearn.preprocessing import StandardScaler")
    if spec.wrapper == "calibrated":
        lines.append("from sklearn.calibration import CalibratedClassifierCV")
    return lines


def source(spec: Spec, indent: str = "    ") -> str:
    """The constructor call as code, one argument per line."""
    args = "".join(f"{indent}    {k}={v!r},\n" for k, v in spec.kwargs.items())
    call = f"{spec.cls}(\n{args}{indent})"
    if spec.wrapper == "labels":
        return f"LabelEncodedClassifier({call})"
    if spec.wrapper == "scaled_target":
        return f"TransformedTargetRegressor(regressor={call}, transformer=StandardScaler())"
    if spec.wrapper == "calibrated":
        return f"CalibratedClassifierCV({call}, ensemble=False)"
    return call
