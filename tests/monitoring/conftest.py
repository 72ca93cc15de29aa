"""carol: staff (she may open the admin) with no permission unless a test grants one."""

import pytest
from django.contrib.auth.models import Permission, User


@pytest.fixture
def carol(db) -> User:
    return User.objects.create_user("carol", "carol@example.org", "carol-password", is_staff=True)


def grant(user: User, *codenames: str) -> None:
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
