"""The official Python client against skiff: CRUD across namespaces, patch, watch with a
resourceVersion and a timeout, a relist after 410 Gone, and pod logs, exec (with a TTY and a
resize) and port-forward.

Usage: client_flow.py KUBECONFIG STORE_ENDPOINT AGENT_IP AGENT_PORT (a stand-in node agent
serving the pod subresources; the pod's ports are ports on AGENT_IP). Prints one "ok <step>" line per step and
exits non-zero with a message on the first failure.
"""

import json
import socket
import subprocess
import sys
import threading

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException
from kubernetes.stream import portforward, stream
from kubernetes.stream.ws_client import RESIZE_CHANNEL


def step(name):
    print(f"ok {name}", flush=True)


def main():
    kubeconfig, store, agent_ip, agent_port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    config.load_kube_config(config_file=kubeconfig)
    core = client.CoreV1Api()
    apps = client.AppsV1Api()

    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="py")))
    for ns in ("py", "default"):
        core.create_namespaced_config_map(
            ns,
            client.V1ConfigMap(
                metadata=client.V1ObjectMeta(name="settings", labels={"team": ns}),
                data={"mode": "slow"},
            ),
        )
    got = core.read_namespaced_config_map("settings", "py")
    assert got.data == {"mode": "slow"}, got.data
    assert got.metadata.uid and got.metadata.resource_version
    every = core.list_config_map_for_all_namespaces(label_selector="team in (py,default)")
    assert sorted(i.metadata.namespace for i in every.items) == ["default", "py"], every.items
    step("create-read-list")

    # A dict body is a strategic merge patch.
    patched = core.patch_namespaced_config_map("settings", "py", {"data": {"mode": "fast", "extra": "1"}})
    assert patched.data == {"mode": "fast", "extra": "1"}, patched.data
    deploy = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1DeploymentSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels={"app": "web"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "web"}),
                spec=client.V1PodSpec(containers=[client.V1Container(name="web", image="registry.local/busybox:1.36")]),
            ),
        ),
    )
    apps.create_namespaced_deployment("py", deploy)
    # A list body is a JSON patch.
    out = apps.patch_namespaced_deployment("web", "py", [{"op": "replace", "path": "/spec/replicas", "value": 3}])
    assert out.spec.replicas == 3, out.spec.replicas
    assert out.spec.template.spec.containers[0].termination_message_path == "/dev/termination-log"
    step("patch")

    try:
        core.read_namespaced_config_map("nope", "py")
        raise AssertionError("reading a missing object succeeded")
    except ApiException as e:
        assert e.status == 404, e.status
    step("not-found")

    # Watch from a list's resourceVersion; a change made after the list arrives.
    listed = core.list_namespaced_config_map("py")
    rv = listed.metadata.resource_version

    def later():
        core.create_namespaced_config_map(
            "py", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="later"), data={"a": "b"})
        )

    threading.Timer(0.5, later).start()
    seen = []
    w = watch.Watch()
    for event in w.stream(core.list_namespaced_config_map, "py", resource_version=rv, timeout_seconds=10):
        seen.append((event["type"], event["object"].metadata.name))
        if event["object"].metadata.name == "later":
            w.stop()
    assert seen == [("ADDED", "later")], seen
    step("watch")

    # History before a compaction is gone: the watch fails with 410 and the client relists.
    old_rv = rv
    core.delete_namespaced_config_map("later", "py")
    head = core.list_namespaced_config_map("py").metadata.resource_version
    subprocess.run(
        ["etcdctl", "--endpoints", store, "compact", head],
        check=True,
        env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin:/usr/local/bin"},
        capture_output=True,
    )
    try:
        for _ in watch.Watch().stream(
            core.list_namespaced_config_map, "py", resource_version=old_rv, timeout_seconds=5
        ):
            pass
        raise AssertionError("a watch from a compacted revision did not fail")
    except ApiException as e:
        assert e.status == 410, e.status
    relisted = core.list_namespaced_config_map("py")
    # kube-root-ca.crt is the root CA publisher's, in every namespace (as upstream).
    names = sorted(i.metadata.name for i in relisted.items if i.metadata.name != "kube-root-ca.crt")
    assert names == ["settings"], names
    step("relist-after-410")

    # Logs come from the node agent that runs the pod.
    core.create_node(
        client.V1Node(
            metadata=client.V1ObjectMeta(name="node-1"),
            status=client.V1NodeStatus(
                addresses=[client.V1NodeAddress(type="InternalIP", address=agent_ip)],
                daemon_endpoints=client.V1NodeDaemonEndpoints(
                    kubelet_endpoint=client.V1DaemonEndpoint(port=agent_port)
                ),
            ),
        )
    )
    core.create_namespaced_pod(
        "py",
        client.V1Pod(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1PodSpec(
                node_name="node-1",
                containers=[client.V1Container(name="app", image="registry.local/busybox:1.36")],
            ),
        ),
    )
    log = core.read_namespaced_pod_log("web", "py", tail_lines=2)
    assert log == "line 4\nline 5\n", repr(log)
    step("logs")

    # exec and port-forward reach into a running pod.
    core.patch_namespaced_pod_status("web", "py", {"status": {"phase": "Running"}})
    resp = stream(
        core.connect_get_namespaced_pod_exec,
        "web",
        "py",
        command=["sh", "-c", "echo out; echo err >&2; exit 3"],
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
        _preload_content=False,
    )
    resp.run_forever(timeout=20)
    assert resp.read_stdout() == "out\n"
    assert resp.read_stderr() == "err\n"
    assert resp.returncode == 3, resp.returncode
    step("exec")

    # With a TTY: stdin and a terminal resize reach the command.
    resp = stream(
        core.connect_get_namespaced_pod_exec,
        "web",
        "py",
        command=["sh", "-c", "read line; echo got $line"],
        stderr=True,
        stdin=True,
        stdout=True,
        tty=True,
        _preload_content=False,
    )
    resp.write_channel(RESIZE_CHANNEL, json.dumps({"Width": 100, "Height": 40}))
    resp.write_stdin("hello\n")
    seen = ""
    while resp.is_open() and "got hello" not in seen:
        resp.update(timeout=20)
        seen += resp.read_stdout(timeout=0) or ""
    resp.close()
    assert "[resize 100x40]" in seen and "got hello" in seen, repr(seen)
    step("exec-tty")

    server = socket.create_server((agent_ip, 0))
    port = server.getsockname()[1]

    def upper_case():
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data.upper())

    threading.Thread(target=upper_case, daemon=True).start()
    pf = portforward(core.connect_get_namespaced_pod_portforward, "web", "py", ports=str(port))
    sock = pf.socket(port)
    sock.setblocking(True)
    sock.sendall(b"ping\n")
    got = b""
    while not got.endswith(b"\n"):
        chunk = sock.recv(4096)
        assert chunk, "the forwarded connection closed early"
        got += chunk
    assert got == b"PING\n", got
    sock.close()
    assert pf.error(port) is None, pf.error(port)
    step("port-forward")

    core.delete_namespaced_config_map("settings", "default")
    apps.delete_namespaced_deployment("web", "py")
    remaining = apps.list_namespaced_deployment("py").items
    assert remaining == [], remaining
    step("delete")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # report the failure as one line for the Rust harness
        print(f"FAILED: {type(e).__name__}: {e}", flush=True)
        sys.exit(1)
