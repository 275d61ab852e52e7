from __future__ import annotations

import pytest

from tests.retraining.builders import make_teams, training_data

# A few contrastive steps: enough to exercise the real recipe, short enough for a shared 2-core CPU.
TEST_RECIPE = {"min_body_steps": 4, "max_body_steps": 4}


@pytest.fixture(scope="session")
def trained_model_dir(tmp_path_factory):
    """A real SetFit model (packaged MiniLM body) trained once per session on three queues' tickets."""
    from mlops.inference.encoders import resolve_model_ref
    from mlops.inference.setfit_recipe import SetFitRecipe, train_setfit
    from mlops.inference.setfit_scorer import save_model

    texts, labels = training_data()
    model = train_setfit(
        texts, labels, base_model=resolve_model_ref("packaged:all-MiniLM-L6-v2"), recipe=SetFitRecipe(**TEST_RECIPE)
    )
    return save_model(model, tmp_path_factory.mktemp("setfit") / "model", texts=texts, labels=labels)


@pytest.fixture
def teams(db):
    return make_teams()


@pytest.fixture
def artifacts(settings, tmp_path):
    settings.TRIAGE_ARTIFACTS_DIR = tmp_path / "artifacts"
    return settings.TRIAGE_ARTIFACTS_DIR
