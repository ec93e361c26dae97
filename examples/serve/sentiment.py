"""A sentiment scorer as two Serve deployments: `Preprocess` (the ingress: reads the text,
splits it into words) calls `SentimentModel` (a linear model with fixed weights, so there is
nothing to download) through a deployment handle.

    GET  /?text=some+words   or   POST / with the text as the body
    GET  /                   scores a sample sentence

Answer: {"text": ..., "words": [...], "score": <-1..1>, "label": "positive|negative|neutral"}
"""

from __future__ import annotations

import re

from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request

SAMPLE = "serving a model from raycai is easy and fast"
WORD = re.compile(r"[a-z']+")


@serve.deployment(ray_actor_options={"num_cpus": 0.1})
class SentimentModel:
    """A bag-of-words linear model: the weights are fixed, the bias is zero."""

    WEIGHTS = {
        "good": 1.0, "great": 1.5, "easy": 1.0, "fast": 0.8, "love": 1.5, "nice": 0.8,
        "happy": 1.2, "works": 0.6, "bad": -1.0, "slow": -0.8, "hard": -0.8, "broken": -1.5,
        "hate": -1.5, "fails": -1.0, "error": -0.8, "not": -0.5,
    }  # fmt: skip

    def score(self, words: list[str]) -> dict[str, object]:
        total = sum(self.WEIGHTS.get(word, 0.0) for word in words)
        score = max(-1.0, min(1.0, total / 3))
        label = "positive" if score > 0.1 else "negative" if score < -0.1 else "neutral"
        return {"words": words, "score": round(score, 3), "label": label}


@serve.deployment(ray_actor_options={"num_cpus": 0.1})
class Preprocess:
    """The application's ingress: text from the query or the body, lower-cased words, then
    the model's answer."""

    def __init__(self, model: DeploymentHandle) -> None:
        self.model = model

    async def __call__(self, request: Request) -> dict[str, object]:
        text = request.query_params.get("text") or (await request.body()).decode() or SAMPLE
        words = WORD.findall(text.lower())
        answer = await self.model.score.remote(words)
        return {"text": text, **answer}


# `import_path: sentiment:app` in serve_config.yaml
app = Preprocess.bind(SentimentModel.bind())
