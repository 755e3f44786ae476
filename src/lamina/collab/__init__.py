"""Collaborative filtering: ratings in, recommendations out (a dot product and an item autoencoder)."""

from lamina.collab.autorec import ItemAutoRec, item_autorec
from lamina.collab.block import UserItemBlock, UserItemize, collab_meta
from lamina.collab.data import (
    UNKNOWN,
    CollabDataLoaders,
    CollabDecode,
    CollabMeta,
    CollabRatings,
    TensorUserItem,
    UserItem,
)
from lamina.collab.ensemble import CollabEnsemble, MembersMSE, collab_ensemble
from lamina.collab.learner import DEFAULT_WD, CollabLearner, collab_learner, load_collab_learner
from lamina.collab.metrics import NDCGAtK, RecallAtK, ndcg_at_k, recall_at_k
from lamina.collab.models import EmbeddingDotBias, EmbeddingNN, emb_sz_rule, embedding_dot_bias, embedding_nn
from lamina.collab.recommend import item_scores, plot_item_factors, recommend, similar_items

__all__ = [
    "DEFAULT_WD",
    "UNKNOWN",
    "CollabDataLoaders",
    "CollabDecode",
    "CollabEnsemble",
    "CollabLearner",
    "CollabMeta",
    "CollabRatings",
    "EmbeddingDotBias",
    "EmbeddingNN",
    "ItemAutoRec",
    "MembersMSE",
    "NDCGAtK",
    "RecallAtK",
    "TensorUserItem",
    "UserItem",
    "UserItemBlock",
    "UserItemize",
    "collab_ensemble",
    "collab_learner",
    "collab_meta",
    "emb_sz_rule",
    "embedding_dot_bias",
    "embedding_nn",
    "item_autorec",
    "item_scores",
    "load_collab_learner",
    "ndcg_at_k",
    "plot_item_factors",
    "recall_at_k",
    "recommend",
    "similar_items",
]
