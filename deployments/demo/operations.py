"""The GraphQL documents a demo seed sends: the same public operations any client uses."""

from __future__ import annotations

REGISTER = """mutation Register($input: RegisterInput!) {
  register(input: $input) { accessToken refreshToken user { id } }
}"""

LOGIN = """mutation Login($input: LoginInput!) {
  login(input: $input) { accessToken refreshToken user { id } }
}"""

REFRESH = """mutation Refresh($token: String!) {
  refreshToken(refreshToken: $token) { accessToken refreshToken user { id } }
}"""

UPDATE_PROFILE = """mutation Profile($input: UpdateProfileInput!) {
  updateProfile(input: $input) { id }
}"""

FOLLOW = """mutation Follow($userId: ID!) { follow(userId: $userId) }"""

CREATE_POST = """mutation Post($input: CreatePostInput!) {
  createPost(input: $input) { id }
}"""

LIKE = """mutation Like($postId: ID!) { likePost(postId: $postId) { id } }"""

COMMENT = """mutation Comment($postId: ID!, $text: String!) {
  createComment(postId: $postId, text: $text) { id }
}"""

SHARE = """mutation Share($postId: ID!, $text: String) {
  sharePost(postId: $postId, text: $text) { id }
}"""

CREATE_ROOM = """mutation Room($input: CreateRoomInput!) {
  createRoom(input: $input) { id }
}"""

SEND_MESSAGE = """mutation Message($input: SendMessageInput!) {
  sendMessage(input: $input) { id }
}"""

RANKED_FEED = """query Feed($first: Int!, $after: String) {
  feed(mode: RANKED, first: $first, after: $after) {
    edges {
      score
      modelVersion
      node {
        id
        text
        tags
        likeCount
        commentCount
        shareCount
        author { id }
        sharedPost { id tags }
      }
    }
    pageInfo { hasNextPage endCursor }
  }
}"""

TRACK = """mutation Track($events: [TrackedEventInput!]!) { trackEvents(events: $events) }"""
