"""Tests of the wire formats (:mod:`tornadose.wire`): pure functions, checked against
independent implementations and real servers and clients."""
