"""What the Dagster daemon does when it dequeues a run, inside its own ECS task: load the
instance (DAGSTER_HOME/dagster.yaml = deploy/dagster/dagster.yaml), load the code location
in a code server (its image from DAGSTER_CURRENT_IMAGE), and launch one job's run through
the instance's run launcher (EcsRunLauncher).

Run as a script by test_dagster_production.py, with the environment an ECS task has; the
ECS agent's task metadata endpoint (ECS_CONTAINER_METADATA_URI_V4) is served here from a
thread, naming the daemon's task in the embedded ECS. Prints the run id as JSON.

Usage: python ecs_daemon_launch.py JOB_NAME PARTITION DAEMON_TASK_ARN CLUSTER_ARN
"""

from __future__ import annotations

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve_task_metadata(task_arn: str, cluster: str) -> str:
    class Metadata(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = {"Cluster": cluster, "TaskARN": task_arn} if self.path.endswith("/task") else {"Name": "daemon"}
            payload = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Metadata)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/v4/daemon"


def main(job_name: str, partition: str, task_arn: str, cluster: str) -> None:
    os.environ["ECS_CONTAINER_METADATA_URI_V4"] = serve_task_metadata(task_arn, cluster)

    import dagster as dg
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import ModuleTarget

    from vector_pipeline.definitions import defs
    from vector_pipeline.defs.partitions import collection_partitions

    instance = dg.DagsterInstance.get()
    target = ModuleTarget(module_name="vector_pipeline.definitions", attribute="defs",
                          working_directory=os.getcwd(), location_name="vector_pipeline")
    with WorkspaceProcessContext(instance, target) as process_context:
        workspace = process_context.create_request_context()
        location = workspace.get_code_location("vector_pipeline")
        remote_job = location.get_repository("__repository__").get_full_job(job_name)
        instance.add_dynamic_partitions(collection_partitions.name, [partition])  # as the sensors do
        run = instance.create_run_for_job(
            job_def=defs.resolve_job_def(job_name), remote_job_origin=remote_job.get_remote_origin(),
            job_code_origin=remote_job.get_python_origin(),
            tags={**remote_job.run_tags, "dagster/partition": partition})
        instance.launch_run(run.run_id, workspace)
    print(json.dumps({"run_id": run.run_id, "launcher": type(instance.run_launcher).__name__}))


if __name__ == "__main__":
    main(*sys.argv[1:5])
