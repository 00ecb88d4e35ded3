// The operations the client sends. Fragments keep each view's fields in one place.
const USER = `fragment UserFields on User {
  id username displayName bio avatarUrl followerCount followingCount viewerFollows followsViewer
}`;
const MEDIA = `id kind status width height blurhash durationMs error url posterUrl variants { name url width height contentType }`;
const POST = `fragment PostFields on Post {
  id text tags createdAt editedAt likeCount commentCount shareCount viewerHasLiked
  author { id username displayName avatarUrl }
  media { ${MEDIA} }
  sharedPost { id text createdAt author { id username displayName avatarUrl } media { ${MEDIA} } }
}`;
const ME = `fragment MeFields on User { id username displayName bio avatarUrl email emailVerified }`;
const AUTH = `accessToken refreshToken expiresIn user { ...MeFields }`;
const MESSAGE = `fragment MessageFields on Message {
  id roomId text seq clientMessageId createdAt deleted senderDeleted sender { id username displayName }
  media { ${MEDIA} }
}`;
const ROOM = `fragment RoomFields on ChatRoom {
  id kind name lastSeq unreadCount
  members { id username displayName }
  readUpTo { seq user { id } }
  lastMessage { id text seq createdAt sender { id username displayName } media { id kind } }
}`;
const NOTIFICATION = `fragment NotificationFields on Notification {
  id kind createdAt read actorCount messageCount
  actor { id username displayName }
  post { id text }
  room { id name kind }
}`;

export const REGISTER = `mutation Register($input: RegisterInput!) { register(input: $input) { ${AUTH} } } ${ME}`;
// Sign-in also says whether it cancelled the account's pending deletion.
export const LOGIN = `mutation Login($input: LoginInput!) { login(input: $input) { ${AUTH} deletionCancelled } } ${ME}`;
export const LOGOUT = `mutation Logout($refreshToken: String!) { logout(refreshToken: $refreshToken) }`;
export const VERIFY_EMAIL = `mutation VerifyEmail($token: String!) { verifyEmail(token: $token) }`;
export const RESEND_VERIFICATION = `mutation ResendVerification { resendVerificationEmail }`;
export const REQUEST_RESET = `mutation RequestReset($email: String!) { requestPasswordReset(email: $email) }`;
export const RESET_PASSWORD = `mutation ResetPassword($token: String!, $newPassword: String!) {
  resetPassword(token: $token, newPassword: $newPassword)
}`;
export const ME_QUERY = `query Me { me { ...MeFields } } ${ME}`;

export const FEED = `query Feed($mode: FeedMode!, $first: Int!, $after: String) {
  feed(mode: $mode, first: $first, after: $after) {
    edges { cursor score modelVersion node { ...PostFields } }
    pageInfo { hasNextPage endCursor }
  }
} ${POST}`;
export const FEED_UPDATED = `subscription FeedUpdated { feedUpdated { postId } }`;
export const CREATE_POST = `mutation CreatePost($input: CreatePostInput!) { createPost(input: $input) { ...PostFields } } ${POST}`;
export const LIKE = `mutation Like($postId: ID!) { likePost(postId: $postId) { id likeCount viewerHasLiked } }`;
export const UNLIKE = `mutation Unlike($postId: ID!) { unlikePost(postId: $postId) { id likeCount viewerHasLiked } }`;
export const SHARE = `mutation Share($postId: ID!, $text: String) { sharePost(postId: $postId, text: $text) { ...PostFields } } ${POST}`;
export const DELETE_POST = `mutation DeletePost($id: ID!) { deletePost(id: $id) }`;
export const POST_QUERY = `query Post($id: ID!, $after: String) {
  post(id: $id) {
    ...PostFields
    comments(first: 20, after: $after) {
      edges { node { id text createdAt author { id username displayName } } }
      pageInfo { hasNextPage endCursor }
    }
  }
} ${POST}`;
export const CREATE_COMMENT = `mutation Comment($postId: ID!, $text: String!) {
  createComment(postId: $postId, text: $text) { id text createdAt author { id username displayName } }
}`;
export const TRACK = `mutation Track($events: [TrackedEventInput!]!) { trackEvents(events: $events) }`;

export const PROFILE = `query Profile($username: String!) { user(username: $username) { ...UserFields } } ${USER}`;
export const USER_POSTS = `query UserPosts($userId: ID!, $after: String) {
  userPosts(userId: $userId, first: 20, after: $after) {
    edges { cursor node { ...PostFields } } pageInfo { hasNextPage endCursor }
  }
} ${POST}`;
export const FOLLOWERS = `query Followers($userId: ID!, $after: String) {
  followers(userId: $userId, first: 50, after: $after) {
    edges { node { ...UserFields } } pageInfo { hasNextPage endCursor }
  }
} ${USER}`;
export const FOLLOWING = `query Following($userId: ID!, $after: String) {
  following(userId: $userId, first: 50, after: $after) {
    edges { node { ...UserFields } } pageInfo { hasNextPage endCursor }
  }
} ${USER}`;
export const FOLLOW = `mutation Follow($userId: ID!) { follow(userId: $userId) }`;
export const UNFOLLOW = `mutation Unfollow($userId: ID!) { unfollow(userId: $userId) }`;
export const SUGGESTIONS = `query Suggestions { followSuggestions(first: 5) { ...UserFields } } ${USER}`;

export const SEARCH = `query Search($query: String!) {
  searchUsers(query: $query, first: 10) { ...UserFields }
  searchPosts(query: $query, first: 20) { edges { node { ...PostFields } } }
} ${USER} ${POST}`;

export const ROOMS = `query Rooms { chatRooms(first: 50) { edges { node { ...RoomFields } } } } ${ROOM}`;
export const ROOM_QUERY = `query Room($id: ID!) {
  chatRoom(id: $id) { ...RoomFields }
  messages(roomId: $id, last: 50) { edges { node { ...MessageFields } } pageInfo { hasPreviousPage startCursor } }
} ${ROOM} ${MESSAGE}`;
export const OLDER_MESSAGES = `query Older($id: ID!, $before: String!) {
  messages(roomId: $id, last: 50, before: $before) {
    edges { node { ...MessageFields } } pageInfo { hasPreviousPage startCursor }
  }
} ${MESSAGE}`;
export const CREATE_ROOM = `mutation CreateRoom($input: CreateRoomInput!) { createRoom(input: $input) { id } }`;
export const SEND_MESSAGE = `mutation Send($input: SendMessageInput!) { sendMessage(input: $input) { ...MessageFields } } ${MESSAGE}`;
export const MARK_READ = `mutation MarkRead($roomId: ID!, $seq: Int!) { markRoomRead(roomId: $roomId, seq: $seq) }`;
export const SEND_TYPING = `mutation Typing($roomId: ID!) { sendTyping(roomId: $roomId) }`;
export const LEAVE_ROOM = `mutation Leave($roomId: ID!) { leaveRoom(roomId: $roomId) }`;
export const MESSAGE_ADDED = `subscription Messages($roomId: ID!, $afterSeq: Int) {
  messageAdded(roomId: $roomId, afterSeq: $afterSeq) { ...MessageFields }
} ${MESSAGE}`;
export const TYPING = `subscription Typing($roomId: ID!) { typing(roomId: $roomId) { user { id username displayName } } }`;
export const PRESENCE = `subscription Presence($roomId: ID!) { presence(roomId: $roomId) { online { id username } } }`;
export const ROOM_READ = `subscription RoomRead($roomId: ID!) { roomRead(roomId: $roomId) { seq user { id } } }`;

export const NOTIFICATIONS = `query Notifications($after: String) {
  notifications(first: 30, after: $after) { edges { node { ...NotificationFields } } pageInfo { hasNextPage endCursor } }
} ${NOTIFICATION}`;
export const UNREAD_COUNT = `query Unread { unreadNotificationCount }`;
export const NOTIFICATION_ADDED = `subscription NotificationAdded { notificationAdded { ...NotificationFields } } ${NOTIFICATION}`;
export const MARK_NOTIFICATIONS_READ = `mutation MarkNotificationsRead { markNotificationsRead }`;

export const UPDATE_PROFILE = `mutation UpdateProfile($input: UpdateProfileInput!) { updateProfile(input: $input) { ...MeFields } } ${ME}`;
export const SESSIONS = `query Sessions { sessions(first: 50) { edges { node { id createdAt lastUsedAt expiresAt userAgent ip current } } } }`;
export const REVOKE_SESSION = `mutation Revoke($id: ID!) { revokeSession(id: $id) }`;
export const CHANGE_PASSWORD = `mutation ChangePassword($currentPassword: String!, $newPassword: String!) {
  changePassword(currentPassword: $currentPassword, newPassword: $newPassword)
}`;

export const CREATE_UPLOAD = `mutation CreateUpload($input: CreateUploadInput!) {
  createUpload(input: $input) { id url headers { name value } expiresAt }
}`;
export const COMPLETE_UPLOAD = `mutation CompleteUpload($id: ID!) { completeUpload(id: $id) { ${MEDIA} } }`;
export const MEDIA_UPDATED = `subscription MediaUpdated($id: ID!) { mediaUpdated(id: $id) { ${MEDIA} } }`;

const STORY = `fragment StoryFields on Story {
  id text createdAt expiresAt seen viewCount
  author { id username displayName avatarUrl }
  media { ${MEDIA} }
}`;
export const STORIES = `query Stories {
  storyFeed(first: 50) { hasUnseen author { id username displayName avatarUrl } stories { ...StoryFields } }
  myStories { ...StoryFields }
} ${STORY}`;
export const CREATE_STORY = `mutation CreateStory($input: CreateStoryInput!) { createStory(input: $input) { ...StoryFields } } ${STORY}`;
export const VIEW_STORY = `mutation ViewStory($id: ID!) { viewStory(id: $id) { id seen } }`;
export const DELETE_STORY = `mutation DeleteStory($id: ID!) { deleteStory(id: $id) }`;
export const STORY_VIEWERS = `query StoryViewers($storyId: ID!, $after: String) {
  storyViewers(storyId: $storyId, first: 20, after: $after) {
    edges { cursor node { viewedAt user { id username displayName avatarUrl } } }
    pageInfo { hasNextPage endCursor }
  }
}`;
export const STORY_VIEW_COUNT = `query StoryViewCount($id: ID!) { story(id: $id) { id viewCount } }`;

export const MUTE_USER = `mutation MuteUser($id: ID!) { muteUser(userId: $id) { emailDigest } }`;
export const MUTE_ROOM = `mutation MuteRoom($id: ID!) { muteRoom(roomId: $id) { emailDigest } }`;
