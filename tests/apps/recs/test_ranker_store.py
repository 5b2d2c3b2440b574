"""The ranker's model folder (the save/load round trip runs in test_ranker_training.py)."""

from __future__ import annotations

import pytest

from threefold.apps.recs.ranker_store import RankerModel
from threefold.core.errors import ModelError


def test_loading_a_folder_that_is_not_a_model_says_how_to_build_one(tmp_path):
    with pytest.raises(ModelError, match="threefold recs build"):
        RankerModel.load(tmp_path)
