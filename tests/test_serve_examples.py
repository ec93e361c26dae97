"""examples/serve: the configs load in raycai and pass Ray 2.60's own ServeDeploySchema once
raycai has rewritten them; the example's model answers without a cluster. The LLM config
cannot run here (no GPU): it is only parsed and validated."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomllib
import yaml

from raycai_core.work.serve_config import apply_listen, load_serve_config, rewrite_paths

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "serve"


def validated(config: dict[str, Any]) -> Any:
    """What raycai sends for `config` (paths rewritten, listen set), checked by Ray's schema."""
    schema = pytest.importorskip("ray.serve.schema").ServeDeploySchema
    sent, _ = rewrite_paths(config, EXAMPLE, REPO)
    sent, _ = apply_listen(sent, 8123)
    return schema.model_validate(sent)


@pytest.fixture
def example_modules() -> Iterator[None]:
    sys.path.insert(0, str(EXAMPLE))
    try:
        yield
    finally:
        sys.path.remove(str(EXAMPLE))
        for name in ("sentiment", "streaming"):
            sys.modules.pop(name, None)


def test_serve_config_is_valid_and_its_working_dir_is_the_example_folder() -> None:
    config = load_serve_config(EXAMPLE / "serve_config.yaml")
    parsed = validated(config)
    routes = {a.name: a.route_prefix for a in parsed.applications}
    assert routes == {"sentiment": "/sentiment", "stream": "/stream"}
    for app in parsed.applications:
        assert app.runtime_env["working_dir"] == f"local://{EXAMPLE}"
        module, attribute = app.import_path.split(":")
        assert (EXAMPLE / f"{module}.py").is_file() and attribute == "app"


def test_the_model_scores_the_preprocessed_words(example_modules: None) -> None:
    pytest.importorskip("ray.serve")
    sentiment = importlib.import_module("sentiment")
    model = sentiment.SentimentModel.func_or_class()
    assert model.score(["great", "and", "fast"])["label"] == "positive"
    assert model.score(["slow", "and", "broken"])["label"] == "negative"
    assert model.score(["a", "table"]) == {
        "words": ["a", "table"],
        "score": 0.0,
        "label": "neutral",
    }
    # The config's deployment names are the classes' (an override of an unknown one fails).
    config = yaml.safe_load((EXAMPLE / "serve_config.yaml").read_text())
    names = {d["name"] for d in config["applications"][0]["deployments"]}
    assert names == {sentiment.Preprocess.name, sentiment.SentimentModel.name}
    streaming = importlib.import_module("streaming")
    assert config["applications"][1]["deployments"][0]["name"] == streaming.Ticker.name


def test_llm_config_loads_and_validates_for_a_gpu_group() -> None:
    config = load_serve_config(EXAMPLE / "llm_config.yaml")
    (app,) = validated(config).applications
    assert app.import_path == "ray.serve.llm:build_openai_app"
    (llm,) = app.args["llm_configs"]
    assert llm["model_loading_config"]["model_id"]
    scaling = llm["deployment_config"]["autoscaling_config"]
    assert 1 <= scaling["min_replicas"] <= scaling["max_replicas"]
    # The accelerator is the one of the GPU group the example's README shows.
    readme = (EXAMPLE / "README.md").read_text()
    block = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    group = tomllib.loads(block)["workers"]["gpu"]
    assert group["accelerator"] == llm["accelerator_type"]
    assert group["nvidia_gpu"] >= 1 and group["max"] >= scaling["max_replicas"]


def test_llm_config_builds_with_ray_serve_llm_where_it_is_installed() -> None:
    """Ray Serve LLM's own argument model (needs ray[llm]; skipped where it is missing)."""
    try:
        from ray.serve.llm import LLMServingArgs
    except ImportError as exc:
        pytest.skip(f"ray.serve.llm cannot be imported here: {exc}")
    args = load_serve_config(EXAMPLE / "llm_config.yaml")["applications"][0]["args"]
    parsed = LLMServingArgs.model_validate(args)
    assert parsed.llm_configs[0].accelerator_type == "L40S"
