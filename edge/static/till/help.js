// F1: the keys, as the key bar shows them.
import { $, closeDialog, h, key, showDialog } from './core.js';

key('F1', '快捷键', () => {
  $('help-keys').replaceChildren(...[...document.querySelectorAll('#keys button.key')].map(b =>
    h('tr', {}, h('td', {}, h('kbd', {}, b.dataset.key)), h('td', {}, b.title.replace(/ \(.*\)$/, '')))));
  showDialog('help-dialog', 'help-close');
});
$('help-close').addEventListener('click', () => closeDialog('help-dialog'));
