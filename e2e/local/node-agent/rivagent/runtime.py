"""Pure helpers of the pod runtime: command resolution, pod phase and conditions, container
status records."""

import os

# Image repositories (last path component, before tag/digest) -> the binary an image's default
# entrypoint runs. The broker image also carries the coordinator, which pods name by command.
IMAGE_ENTRYPOINTS = {
    "rivulet-broker": "rivulet-broker",
    "rivulet-operator": "rivulet-operator",
    "rivulet-coordinator": "rivulet-coordinator",
}


class CommandError(Exception):
    pass


def image_repo(image: str) -> str:
    name = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return name.split(":", 1)[0]


def resolve_argv(container: dict, command: list, args: list, bin_dir: str) -> list:
    """The host argv of a container: /usr/local/bin/<x> -> <bin-dir>/<x>; no command -> the
    image's entrypoint (rivulet-* images only); other absolute paths run as they are."""
    if command:
        exe = command[0]
        if exe.startswith("/usr/local/bin/"):
            exe = os.path.join(bin_dir, exe[len("/usr/local/bin/"):])
        elif "/" not in exe and os.path.exists(os.path.join(bin_dir, exe)):
            exe = os.path.join(bin_dir, exe)
        return [exe] + list(command[1:]) + list(args)
    repo = image_repo(container.get("image", ""))
    for prefix, binary in IMAGE_ENTRYPOINTS.items():
        if repo.startswith(prefix):
            return [os.path.join(bin_dir, binary)] + list(args)
    raise CommandError(f"image {container.get('image')!r} has no command and no known entrypoint "
                       f"(the node agent maps {', '.join(sorted(IMAGE_ENTRYPOINTS))})")


def pod_phase(restart_policy: str, init_done: bool, init_failed: bool, states: list) -> str:
    """The kubelet's getPhase. states: one (kind, exit_code, has_last_termination) per app
    container, kind in waiting/running/terminated (a waiting container that ran before counts
    as stopped, with its last exit code)."""
    if init_failed:
        return "Failed"
    if not init_done:
        return "Pending"
    waiting = running = stopped = succeeded = 0
    for kind, code, has_last in states:
        if kind == "running":
            running += 1
        elif kind == "terminated" or (kind == "waiting" and has_last):
            stopped += 1
            succeeded += code == 0
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if restart_policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if restart_policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def merge_conditions(existing: list, ours: dict, now: str) -> list:
    """Our conditions (type -> status) over the pod's current list, keeping transition times."""
    out = []
    seen = set()
    for c in existing or []:
        t = c.get("type")
        if t in ours:
            seen.add(t)
            status = ours[t]
            if c.get("status") == status:
                out.append(c)
            else:
                out.append({"type": t, "status": status, "lastProbeTime": None, "lastTransitionTime": now})
        else:
            out.append(c)
    for t, status in ours.items():
        if t not in seen:
            out.append({"type": t, "status": status, "lastProbeTime": None, "lastTransitionTime": now})
    return out
