from django.urls import path

from conversations.presets import views

urlpatterns = [
    path("presets/", views.preset_list, name="preset_list"),
    path("presets/new/", views.preset_create, name="preset_create"),
    path("presets/picker.json", views.preset_picker, name="preset_picker"),
    path("presets/<int:preset_id>/edit/", views.preset_edit, name="preset_edit"),
    path("presets/<int:preset_id>/delete/", views.preset_delete, name="preset_delete"),
]
