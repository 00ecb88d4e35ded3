"""The notices the mail consumer sends about an account (`actors.consumers.mail`): the event
type, the subject, and the text (`{erase_after}` comes from the payload). There is no link
in them: a notice people learn to click is a phishing template."""

from __future__ import annotations

PASSWORD_CHANGED = "identity.password.changed"
DELETION_REQUESTED = "account.deletion.requested"
DELETION_CANCELLED = "account.deletion.cancelled"

NOTICES = {
    PASSWORD_CHANGED: (
        "Your Nova password was changed",
        "The password of your Nova account was changed, and every other device signed in to "
        "it was signed out.\n\nIf this was you, there is nothing to do. If it was not, reset "
        'your password from the app\'s sign-in screen ("Forgot password") now.',
    ),
    DELETION_REQUESTED: (
        "Your Nova account will be deleted",
        "You asked for your Nova account to be deleted, and every device signed in to it was "
        "signed out. On {erase_after} the account is erased with your posts, comments, "
        "likes, follows, pictures and videos; your messages stay in their chats as from a "
        "deleted account.\n\nChanged your mind? Sign in before then and the deletion is "
        "cancelled. If you did not ask for this, sign in and change your password.",
    ),
    DELETION_CANCELLED: (
        "Your Nova account will not be deleted",
        "You signed in to your Nova account, which cancels the deletion you had asked for. "
        "Nothing will be erased.\n\nIf this was not you, reset your password from the app's "
        'sign-in screen ("Forgot password") now.',
    ),
}
