"""Exec, attach and port-forward on the kubelet API: the wire protocols.

A kubelet answers these over two transports, and so does vkpy:

- an HTTP upgrade to SPDY/3.1 (``upgrade``, ``spdyexec``, ``spdyforward``), what every
  apiserver speaks to a kubelet unless the node declares ExtendWebSocketsToKubelet;
- a WebSocket (``websocket``): the channel protocols ``channel.k8s.io``,
  ``base64.channel.k8s.io``, their ``v4.`` forms and ``v5.channel.k8s.io`` for exec and
  attach; ``portforward.k8s.io`` channels and SPDY tunnelled in a WebSocket
  (``SPDY/3.1+portforward.k8s.io``) for port-forward.

Whatever the wire, one `bridge` moves the bytes between the caller and the backend's
`vkpy.remote.Process`, and `status` words the outcome as the kubelet does.
"""
