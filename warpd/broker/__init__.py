"""Sessions shared between daemons through Redis (``[broker] url``).

:mod:`~warpd.broker.hub` (RedisHub, the daemon's hub with Redis behind it),
:mod:`~warpd.broker.link` (its tasks: publishing, delivering, rejoining),
:mod:`~warpd.broker.redis` (warpd's keys, Lua script and channels in Redis),
:mod:`~warpd.broker.mirror` (snapshots of streams assembled elsewhere).

Importing this package imports nothing: the Redis client is an extra
(``warpd[redis]``), loaded only by the server when a broker is configured.
"""
