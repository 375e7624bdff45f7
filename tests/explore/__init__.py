"""Every reachable state of a rotation, enumerated (docs/exploration.md).

    hand.py      what each effect of a tick does: ok, a fault, a crash after it
    model.py     the model identity provider and delivery, with state of their own
    world.py     one world: the product wired over an in-memory log, its snapshot, its checks
                 after every effect and delivery
    judge.py     the invariants, and the oracle's own fold of the log
    rest.py      the invariants of a world between moves; where the clock may jump
    explorer.py  the depth-first exploration, the scenarios, the path counts, replay()
    run.py       every scenario at once, and the table of counts
    __main__.py  python -m tests.explore
"""
