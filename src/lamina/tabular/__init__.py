"""lamina.tabular: a table (pandas, polars, CSV or parquet) to a trained, explained, exported model.

>>> dls = TabularDataLoaders.from_csv("adult.csv", y_names="income", valid_pct=0.2, seed=42)  # doctest: +SKIP
>>> learn = tabular_learner(dls, metrics=accuracy)                                          # doctest: +SKIP
>>> learn.fit_one_cycle(5, 1e-2)                                                            # doctest: +SKIP
>>> learn.predict({"age": 40, "workclass": "Private", ...})                                 # doctest: +SKIP
"""

from lamina.tabular.columns import ColumnPlan, add_datepart, plan_columns, read_table
from lamina.tabular.data import TabularDataLoaders, TabularTable, TabularTarget
from lamina.tabular.learner import feature_importance, plot_feature_importance, tabular_learner
from lamina.tabular.model import PeriodicEmbedding, TabularModel, emb_sz_rule, tabular_model
from lamina.tabular.procs import (
    NA_LABEL,
    Categorify,
    FillMissing,
    Normalize,
    QuantileNormalize,
    TabularProc,
    TabularRow,
    TensorCat,
    TensorCont,
    ValueCodes,
)

__all__ = [
    "NA_LABEL",
    "Categorify",
    "ColumnPlan",
    "FillMissing",
    "Normalize",
    "PeriodicEmbedding",
    "QuantileNormalize",
    "TabularDataLoaders",
    "TabularModel",
    "TabularProc",
    "TabularRow",
    "TabularTable",
    "TabularTarget",
    "TensorCat",
    "TensorCont",
    "ValueCodes",
    "add_datepart",
    "emb_sz_rule",
    "feature_importance",
    "plan_columns",
    "plot_feature_importance",
    "read_table",
    "tabular_learner",
    "tabular_model",
]
