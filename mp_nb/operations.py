"""The GraphQL documents the client sends, one per Model API operation.

They are plain strings so that notebooks can show them and tests can validate every one
against the SDL the local Model API serves (``mp_nb/schema.graphql``).
"""

from __future__ import annotations

CALLBACK_FIELDS = """
    id
    eventTypes
    version
    callback {
      scheme
      host
      port
      path
      queryParams { key value }
      additionalHeaders { key value }
      credType
      credKey
    }
"""

ADD_CALLBACK = f"""
mutation addModelEventWebhookCallback($input: ModelEventCallbackInput!) {{
  addModelEventWebhookCallback(input: $input) {{{CALLBACK_FIELDS}  }}
}}
"""

LIST_CALLBACKS = f"""
query modelEventWebhookCallbacks($offset: String, $pageSize: Int) {{
  modelEventWebhookCallbacks(offset: $offset, pageSize: $pageSize) {{
    nextOffset
    totalResults
    results {{{CALLBACK_FIELDS}    }}
  }}
}}
"""

PATCH_CALLBACK = f"""
mutation patchModelEventWebhookCallback($id: ID!, $input: ModelEventCallbackInput!) {{
  patchModelEventWebhookCallback(id: $id, input: $input) {{{CALLBACK_FIELDS}  }}
}}
"""

REMOVE_CALLBACK = """
mutation removeModelEventWebhookCallback($id: ID!) {
  removeModelEventWebhookCallback(id: $id)
}
"""

PING_CALLBACK = """
mutation pingModelEventWebhookCallback($id: ID!) {
  pingModelEventWebhookCallback(id: $id)
}
"""

ADD_EVENTS = f"""
mutation addModelEventToCallback($id: ID!, $eventTypes: [ModelEventType!]!) {{
  addModelEventToCallback(id: $id, eventTypes: $eventTypes) {{{CALLBACK_FIELDS}  }}
}}
"""

REMOVE_EVENTS = f"""
mutation removeModelEventFromCallback($id: ID!, $eventTypes: [ModelEventType!]!) {{
  removeModelEventFromCallback(id: $id, eventTypes: $eventTypes) {{{CALLBACK_FIELDS}  }}
}}
"""

#: Every document, by the name of the field it calls.
ALL = {
    "addModelEventWebhookCallback": ADD_CALLBACK,
    "modelEventWebhookCallbacks": LIST_CALLBACKS,
    "patchModelEventWebhookCallback": PATCH_CALLBACK,
    "removeModelEventWebhookCallback": REMOVE_CALLBACK,
    "pingModelEventWebhookCallback": PING_CALLBACK,
    "addModelEventToCallback": ADD_EVENTS,
    "removeModelEventFromCallback": REMOVE_EVENTS,
}
