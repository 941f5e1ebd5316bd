"""The reference interpreter: a transitions.Machine built from a spec.

Theory of operation. A spec's [[transitions]] become Machine transitions one for one: the trigger is
the event type, the conditions are the transition's route (if any) followed by its guards, each a
closure over the registry function. Triggers receive the payment, the event, the resolved amount and
whether the event is a command, so conditions see exactly what the compiled table's guards see.

Rule 1: every legal move is in a spec; this module adds none and removes none.
Rule 2: this module knows no provider by name.
Rule 3: this is the only module that imports transitions, and no Machine crosses the public API.

The hot path never comes here: it runs the compiled table (`_table`). This interpreter answers the
differential test, and its GraphMachine twin draws the diagrams (`draw`, used by `_diagram`).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any, Literal

from transitions import Machine, MachineError

from ._guards import GUARDS, ROUTES
from ._spec import Spec
from ._values import Event, Payment


class _Model:
    """The Machine's model: it holds only the state; the payment travels in the trigger's kwargs."""

    state: str
    trigger: Callable[..., bool]


def _route_condition(name: str) -> Callable[..., bool]:
    route = ROUTES[name]

    def holds(*, payment: Payment, event: Event, amount: int, command: bool) -> bool:
        return route.holds(payment, event, amount)

    holds.__name__ = name
    return holds


def _guard_condition(name: str) -> Callable[..., bool]:
    guard = GUARDS[name]

    def passes(*, payment: Payment, event: Event, amount: int, command: bool) -> bool:
        return guard.check(payment, event, amount, payment.spec.policy, command) is None

    passes.__name__ = name
    return passes


def machine_config(spec: Spec) -> dict[str, Any]:
    """The spec as transitions' plain-data configuration (states, transitions, initial)."""
    rows = []
    for t in spec.transitions:
        conditions = ([_route_condition(t.when)] if t.when else []) + [_guard_condition(g) for g in t.guards]
        rows.append({"trigger": t.trigger.value, "source": t.source, "dest": t.dest, "conditions": conditions})
    return {"states": list(spec.states), "transitions": rows, "initial": spec.initial,
            "auto_transitions": False, "ignore_invalid_triggers": False, "send_event": False}


_MACHINES: weakref.WeakKeyDictionary[Spec, tuple[Machine, _Model]] = weakref.WeakKeyDictionary()


def _machine_for(spec: Spec) -> tuple[Machine, _Model]:
    found = _MACHINES.get(spec)
    if found is None:
        model = _Model()
        machine = Machine(model=model, **machine_config(spec))
        found = _MACHINES[spec] = (machine, model)
    return found


def reference_dest(payment: Payment, event: Event, amount: int, command: bool) -> str | None:
    """Where the transitions Machine takes `payment` on `event`, or None when it refuses.

    Refusal covers both "no transition from this state" (MachineError) and "conditions failed".
    """
    machine, model = _machine_for(payment.spec)
    machine.set_state(payment.state, model)
    try:
        moved = model.trigger(event.type.value, payment=payment, event=event, amount=amount, command=command)
    except MachineError:
        return None
    except AttributeError:
        # transitions raises AttributeError for a trigger that no transition of this spec uses.
        return None
    return model.state if moved else None


def validate_with_transitions(spec: Spec) -> None:
    """Build the Machine once, so that a spec transitions cannot accept never loads."""
    _machine_for(spec)


def draw(spec: Spec, labels: Sequence[str], *, engine: Literal["mermaid", "graphviz"], title: str) -> Any:
    """The spec's state diagram through transitions' GraphMachine, one edge label per spec transition.

    engine "mermaid" returns the mermaid source text; "graphviz" returns a graphviz.Digraph (the caller
    checks that the graphviz package imports: transitions would quietly fall back to mermaid).
    The diagram has no active state: it shows the spec, not a payment.
    """
    from transitions.extensions.diagrams import GraphMachine

    config = machine_config(spec)
    if len(labels) != len(config["transitions"]):
        raise ValueError(f"{len(labels)} labels for {len(config['transitions'])} transitions")
    for row, label in zip(config["transitions"], labels, strict=True):
        row["label"] = label
    machine = GraphMachine(model=None, title=title, graph_engine=engine, **config)
    graph = machine.graph_cls(machine).get_graph(title=title)
    if engine == "mermaid":
        return graph.draw(None)  # the mermaid graph's draw(None) is its source text
    if not hasattr(graph, "pipe"):
        raise RuntimeError("transitions fell back from graphviz to mermaid")
    return graph
