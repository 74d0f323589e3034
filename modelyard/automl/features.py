"""Preprocessing: from semantic types to a scikit-learn ColumnTransformer, as objects and as code.

`build` makes the transformer a trial trains with; `source` writes the same construction as
Python for the trial's generated script. They sit side by side so they change together, and the
reproduction test runs a generated script to prove they agree.

- numeric: median imputation (with missing-value indicators) and standard scaling
- categorical (<= 50 values): constant imputation and one-hot encoding (unknown values ignored)
- high cardinality: hashed into 256 columns
- datetime: epoch days, year, cyclical month / weekday / hour, weekend; imputed and scaled
- text: TF-IDF of words and word pairs (at most 2,000 terms per column)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from modelyard.automl import profile as types

HASH_FEATURES = 256
TFIDF_TERMS = 2000


@dataclass
class FeaturePlan:
    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    high_cardinality: list[str] = field(default_factory=list)
    datetime: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # every column, as in the input table

    @property
    def columns(self) -> list[str]:
        """The raw columns the model reads, in the order of the input table."""
        used = {
            *self.numeric,
            *self.categorical,
            *self.high_cardinality,
            *self.datetime,
            *self.text,
        }
        return [c for c in self.order if c in used]


def plan(semantic_types: dict[str, str]) -> FeaturePlan:
    p = FeaturePlan(order=list(semantic_types))
    for column, kind in semantic_types.items():
        if kind == types.NUMERIC:
            p.numeric.append(column)
        elif kind == types.CATEGORICAL:
            p.categorical.append(column)
        elif kind == types.HIGH_CARDINALITY:
            p.high_cardinality.append(column)
        elif kind == types.DATETIME:
            p.datetime.append(column)
        elif kind == types.TEXT:
            p.text.append(column)
        else:
            p.dropped[column] = kind
    return p


def build(p: FeaturePlan):  # -> ColumnTransformer
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from modelyard.automl.transformers import DatetimeFeatures, HashingEncoder, TextColumn

    steps = []
    if p.numeric:
        numeric = Pipeline(
            [
                ("impute", SimpleImputer(strategy="median", add_indicator=True)),
                ("scale", StandardScaler()),
            ]
        )
        steps.append(("numeric", numeric, p.numeric))
    if p.categorical:
        categorical = Pipeline(
            [
                ("impute", SimpleImputer(strategy="constant", fill_value="missing")),
                ("onehot", OneHotEncoder(handle_unknown="ignore")),
            ]
        )
        steps.append(("categorical", categorical, p.categorical))
    if p.high_cardinality:
        steps.append(("hashed", HashingEncoder(n_features=HASH_FEATURES), p.high_cardinality))
    if p.datetime:
        dates = Pipeline(
            [
                ("features", DatetimeFeatures()),
                ("impute", SimpleImputer(strategy="median")),
                ("scale", StandardScaler()),
            ]
        )
        steps.append(("datetime", dates, p.datetime))
    for i, column in enumerate(p.text):
        text = Pipeline(
            [
                ("column", TextColumn()),
                ("tfidf", TfidfVectorizer(max_features=TFIDF_TERMS, ngram_range=(1, 2))),
            ]
        )
        steps.append((f"text_{i}", text, [column]))
    return ColumnTransformer(steps, remainder="drop")


def imports(p: FeaturePlan) -> list[str]:
    lines = [
        "from sklearn.compose import ColumnTransformer",
        "from sklearn.pipeline import Pipeline",
    ]
    if p.numeric or p.categorical or p.datetime:
        lines.append("from sklearn.impute import SimpleImputer")
    if p.numeric or p.datetime:
        lines.append("from sklearn.preprocessing import StandardScaler")
    if p.categorical:
        lines.append("from sklearn.preprocessing import OneHotEncoder")
    if p.text:
        lines.append("from sklearn.feature_extraction.text import TfidfVectorizer")
    ours = [
        name
        for name, used in (
            ("DatetimeFeatures", p.datetime),
            ("HashingEncoder", p.high_cardinality),
            ("TextColumn", p.text),
        )
        if used
    ]
    if ours:
        lines.append(f"from modelyard.automl.transformers import {', '.join(ours)}")
    return lines


def source(p: FeaturePlan) -> str:
    """The body of the generated `build_preprocessor()` function."""
    out = ["    steps = []"]
    if p.numeric:
        out += [
            f"    numeric_columns = {p.numeric!r}",
            "    numeric = Pipeline([",
            '        ("impute", SimpleImputer(strategy="median", add_indicator=True)),',
            '        ("scale", StandardScaler()),',
            "    ])",
            '    steps.append(("numeric", numeric, numeric_columns))',
        ]
    if p.categorical:
        out += [
            f"    categorical_columns = {p.categorical!r}",
            "    categorical = Pipeline([",
            '        ("impute", SimpleImputer(strategy="constant", fill_value="missing")),',
            '        ("onehot", OneHotEncoder(handle_unknown="ignore")),',
            "    ])",
            '    steps.append(("categorical", categorical, categorical_columns))',
        ]
    if p.high_cardinality:
        out += [
            "    # Too many distinct values to one-hot encode: hash them into a fixed width.",
            f"    hashed_columns = {p.high_cardinality!r}",
            f'    steps.append(("hashed", HashingEncoder(n_features={HASH_FEATURES}), '
            "hashed_columns))",
        ]
    if p.datetime:
        out += [
            f"    datetime_columns = {p.datetime!r}",
            "    dates = Pipeline([",
            '        ("features", DatetimeFeatures()),',
            '        ("impute", SimpleImputer(strategy="median")),',
            '        ("scale", StandardScaler()),',
            "    ])",
            '    steps.append(("datetime", dates, datetime_columns))',
        ]
    if p.text:
        out += [
            f"    for i, column in enumerate({p.text!r}):",
            "        text = Pipeline([",
            '            ("column", TextColumn()),',
            f'            ("tfidf", TfidfVectorizer(max_features={TFIDF_TERMS}, '
            "ngram_range=(1, 2))),",
            "        ])",
            '        steps.append((f"text_{i}", text, [column]))',
        ]
    out.append('    return ColumnTransformer(steps, remainder="drop")')
    return "\n".join(out)
