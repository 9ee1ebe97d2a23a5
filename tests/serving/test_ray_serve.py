"""The app on Ray Serve with two CPU replicas behind one HTTP endpoint (local Ray, 127.0.0.1)."""

import socket

import httpx
import pytest

ray = pytest.importorskip("ray", reason="the Ray Serve test needs the serve extra (pip install omni-hf[serve])")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_replicas_behind_one_endpoint(tiny_omni_dir, monkeypatch):
    import openai
    from ray import serve
    from ray.serve._private import api as serve_api

    # No tight wall-clock limits: Ray gives its HTTP proxy 60 s to start and 5-10 s per readiness / health check
    # (then kills it), which a loaded 2-core machine can exceed. Its processes read these from the environment.
    monkeypatch.setattr(serve_api, "HTTP_PROXY_TIMEOUT", 900, raising=False)
    for name in ("READY_CHECK_TIMEOUT_S", "HEALTH_CHECK_TIMEOUT_S", "HEALTH_CHECK_PERIOD_S"):
        monkeypatch.setenv(f"RAY_SERVE_PROXY_{name}", "300")

    from omni_hf.serving import ServerLimits
    from omni_hf.serving.ray_deployment import build_ray_app

    port = _free_port()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        app = build_ray_app(
            str(tiny_omni_dir),
            num_replicas=2,
            model_id="tiny-omni",
            limits=ServerLimits(max_tokens=16, talker_max_new_tokens=60),
            max_active=4,
            threads=1,
            ray_actor_options={"num_cpus": 0.5},
        )
        serve.run(app, route_prefix="/", name="omni-hf")
        url = f"http://127.0.0.1:{port}"
        replicas = set()
        for _ in range(200):  # requests go to a replica at random: 200 that all miss one would be a bug
            health = httpx.get(url + "/health", timeout=300).json()
            assert health["status"] == "ok"
            replicas.add(health["replica"])
            if len(replicas) == 2:
                break
        assert len(replicas) == 2, replicas
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused")
        stream = client.chat.completions.create(
            model="tiny-omni",
            messages=[{"role": "user", "content": "hi"}],
            modalities=["text", "audio"],
            audio={"voice": "Chelsie", "format": "pcm16"},
            stream=True,
            temperature=0,
            max_tokens=6,
        )
        audio = [c.choices[0].delta.audio for c in stream if c.choices and c.choices[0].delta.audio]
        assert any(a.data for a in audio)
    finally:
        serve.shutdown()
        ray.shutdown()
