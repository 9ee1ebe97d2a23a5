"""The same app on Ray Serve: N replicas (each loads the model and batches its own requests) behind one endpoint.

    from ray import serve
    from omni_hf.serving.ray_deployment import build_ray_app

    serve.run(build_ray_app("path/or/repo", num_replicas=2, ray_actor_options={"num_gpus": 1}), route_prefix="/")

On a cluster: `ray start --head` on one machine and `ray start --address=HEAD:6379` on the others (or KubeRay), then
run the lines above in a driver connected with `ray.init(address="auto")`; Serve's HTTP proxy
(`serve.start(http_options={"host": "0.0.0.0", "port": 8000})`) spreads requests over the replicas. Needs the
`serve` extra (`pip install omni-hf[serve]`).
"""

import os

from .protocol import ServerLimits


class OmniServeReplica:
    """One replica: loads the model on start and serves `create_app`'s routes (late-bound ASGI app)."""

    def __init__(self, model_path: str, app_kwargs: dict, device: str = "cpu", dtype: str = "auto", threads=None):
        self.model_path, self.app_kwargs = model_path, app_kwargs
        self.device, self.dtype, self.threads = device, dtype, threads

    def __serve_build_asgi_app__(self):
        import torch

        from .app import create_app
        from .server import load_for_serving

        if self.threads:
            torch.set_num_threads(self.threads)
        model, processor = load_for_serving(self.model_path, self.device, self.dtype)
        app = create_app(model, processor, **self.app_kwargs)
        app.state.omni.replica = f"{os.uname().nodename}:{os.getpid()}"
        return app


def build_ray_app(
    model_path: str,
    num_replicas: int = 2,
    model_id: str | None = None,
    limits: ServerLimits | None = None,
    api_key: str | None = None,
    max_active: int = 8,
    device: str = "cpu",
    dtype: str = "auto",
    threads: int | None = None,
    ray_actor_options: dict | None = None,
    **app_options,
):
    """A bound Ray Serve application (pass it to `serve.run`) of `num_replicas` copies of the omni-hf app.

    Each replica accepts up to `max_active` requests (its batch); Serve's router sends at most that many to it.
    `app_options`: the rest of `create_app`'s options for every replica (`allowed_hosts`, `cors_origins`,
    `max_realtime_sessions`, `body_timeout`, ...), as `omni-hf serve` sets them.
    """
    from ray import serve

    ingress = serve.ingress()(OmniServeReplica)
    deployment = serve.deployment(
        ingress,
        name="omni-hf",
        num_replicas=num_replicas,
        max_ongoing_requests=max_active,
        ray_actor_options=ray_actor_options or {"num_cpus": 1},
    )
    from .server import served_name

    name = model_id or served_name(model_path)  # never a local path in replies
    app_kwargs = {"model_id": name, "limits": limits, "api_key": api_key, "max_active": max_active, **app_options}
    return deployment.bind(model_path, app_kwargs, device, dtype, threads)


__all__ = ["OmniServeReplica", "build_ray_app"]
