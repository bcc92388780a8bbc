import ConfigGet from './get.js'

/** `chunky config` alone: the saved settings, and the topic's line in `chunky --help`. */
export default class Config extends ConfigGet {
  static override summary = 'Show or change the saved settings (master, token, zone): chunky config set|get|unset|path'
  static override examples = [
    {description: 'The saved settings', command: '<%= config.bin %> <%= command.id %>'},
    {description: 'Save the master address', command: '<%= config.bin %> <%= command.id %> set master http://master.example:7400'},
  ]
}
