"""The usage example of the tornadose 0.2.2 documentation, unchanged.

Everything below this docstring is the "Usage" section of the 0.2.2 docs, verbatim:
old code written against tornadose must keep working as it is. It serves
Server-Sent Events on port 9000 and publishes a new random number every second.

Run it and watch the stream with::

    $ python examples/seed.py
    $ curl -N http://localhost:9000

(``-N`` stops curl from buffering, so each event shows up as it arrives.)
See ``examples/modern.py`` for the same idea written in today's asyncio style.
"""

import random
from tornado.ioloop import IOLoop, PeriodicCallback
from tornado.web import Application
from tornadose.handlers import EventSource
from tornadose.stores import DataStore

store = DataStore()

app = Application(
    [(r'/', EventSource, {'store': store})],
    debug=True)
app.listen(9000)

loop = IOLoop.instance()
PeriodicCallback(lambda: store.set_data(random.random()), 1000).start()
loop.start()
