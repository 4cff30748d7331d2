"""Users for the presets and usage tests: ada and grace (who must never see each other's rows)
and the staff member root, each with a signed-in client when asked."""

import pytest
from django.test import Client


@pytest.fixture
def ada(django_user_model):
    return django_user_model.objects.create_user(username="ada")


@pytest.fixture
def grace(django_user_model):
    return django_user_model.objects.create_user(username="grace")


@pytest.fixture
def root(django_user_model):
    return django_user_model.objects.create_user(username="root", is_staff=True)


@pytest.fixture
def client_for():
    def make(user) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return make
